"""Front ends: each frames bytes, calls the dispatcher, and writes what it is handed."""
