"""Exit codes of every sub-command (documented in the README and in ``--help``)."""

OK = 0  #: everything done, nothing wrong
PARTIAL = 1  #: done, but some files were refused / problems found / configuration invalid
USAGE = 2  #: bad command line (argparse)
FATAL = 3  #: could not run: server unreachable or failing, store or file unreadable
INTERRUPTED = 130  #: stopped by Ctrl-C (an import journal is kept: run again to resume)

EPILOG = ("exit codes: 0 success; 1 some files refused, problems found or configuration "
          "invalid; 2 bad command line; 3 could not run (server unreachable, store "
          "unreadable); 130 interrupted")
