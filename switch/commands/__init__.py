"""One module per `medswitch` subcommand; each has `add_parser(subparsers)`."""
