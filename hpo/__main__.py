import sys

try:
    from hpo.cli import main
except KeyboardInterrupt:  # Ctrl-C before the command has started: nothing to clean up, nothing to say
    sys.exit(130)

sys.exit(main())
