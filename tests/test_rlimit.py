"""The daemon lifts its soft open-files limit for --max-connections, never past the hard one."""

import resource

import pytest

from chatd.rlimit import HEADROOM, raise_nofile


@pytest.fixture
def restore_nofile():
    saved = resource.getrlimit(resource.RLIMIT_NOFILE)
    yield saved
    resource.setrlimit(resource.RLIMIT_NOFILE, saved)


def test_soft_limit_raised_to_fit_connections(restore_nofile):
    soft, hard = restore_nofile
    resource.setrlimit(resource.RLIMIT_NOFILE, (512, hard))
    want = min(2000 + HEADROOM, hard)
    assert raise_nofile(2000) == want
    assert resource.getrlimit(resource.RLIMIT_NOFILE) == (want, hard)


def test_never_past_the_hard_limit(restore_nofile):
    soft, hard = restore_nofile
    if hard == resource.RLIM_INFINITY:
        pytest.skip("no hard limit to run into here")  # root on some CI boxes
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
    assert raise_nofile(hard * 2) == hard
    assert resource.getrlimit(resource.RLIMIT_NOFILE) == (hard, hard)


def test_left_alone_when_already_enough(restore_nofile):
    soft, hard = restore_nofile
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 5000), hard))
    assert raise_nofile(100) == min(hard, 5000)
