"""One module per `localspec` subcommand, each exposing `register(subparsers)`."""
