"""The ``chatd`` command dispatches to its subcommands and says what it has."""

from chatd import cli


def test_no_command_lists_the_commands(capsys):
    assert cli.main([]) == 2
    assert "bench" in capsys.readouterr().out


def test_unknown_command_is_refused_with_the_list(capsys):
    assert cli.main(["frobnicate"]) == 2
    err = capsys.readouterr().err
    assert "unknown command 'frobnicate'" in err and "bench" in err


def test_subcommand_gets_the_rest_of_the_arguments(capsys):
    try:
        cli.main(["bench", "--help"])
    except SystemExit as e:  # argparse exits after printing help
        assert e.code == 0
    assert "usage: chatd bench" in capsys.readouterr().out
