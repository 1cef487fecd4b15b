"""The ``codex-node`` command.

``codex-node run [flags]`` runs a node. Flags, their defaults and their environment variables come from the
option table in ``config.py``; ``--help`` shows all three. A bad value stops the command before anything starts,
with one line on stderr naming the flag and exit code 2 (never a traceback); so does a data dir another
codex-node uses (the line gives its pid). A node that cannot start otherwise (a disk error) exits 1, also with
one line.

Adding a command (``codex-node deploy`` is one): write a :class:`Command` — its ``add_arguments`` may reuse shared
flags with ``config.add_options(parser, [option("--eth-provider"), …])`` and its ``run`` may resolve them with
``config.resolve`` — and list it in :data:`COMMANDS`. A command module imports ``config``, never this module.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import NoReturn

from codex_node import __version__
from codex_node.config import CONFIG_FILE, OPTIONS, NodeConfig, add_options, given, load_node_config
from codex_node.errors import CodexError, ConfigError

PROG = "codex-node"

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error in one line (and exits 2) instead of usage text plus the error."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


@dataclass(frozen=True)
class Command:
    """A subcommand: ``add_arguments`` fills its parser, ``run`` gets the parsed flags and the environment."""

    name: str
    help: str
    description: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace, Mapping[str, str]], int]
    epilog: str = ""


# --- run ---------------------------------------------------------------------------------------------------------

_RUN_EPILOG = """\
Every flag can also be set in the environment (CODEX_<FLAG>, e.g. CODEX_API_PORT=8081) or in the TOML file of
--config-file (keys are flag names: api-port = 8081). Precedence: flags > environment > config file > defaults.
Sizes: 20GiB, 500MB, 1048576 (bytes). Durations: 30d, 1h, 10m, 10s, 1h30m, or seconds.
Exit codes: 0 stopped cleanly (SIGINT/SIGTERM), 1 failed to start or run, 2 invalid flags or configuration
(including a data dir another codex-node uses)."""


def _run_arguments(parser: argparse.ArgumentParser) -> None:
    add_options(parser, (CONFIG_FILE, *OPTIONS))


def _run(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    # Imported here so that `--help` and flag errors stay fast and never touch the heavier node modules.
    from codex_node.logutils import configure_logging
    from codex_node.node import run_node
    from codex_node.utils import eventloop, exitguard

    config = load_node_config(given(args, (CONFIG_FILE, *OPTIONS)), env)
    check_files(config)
    configure_logging(config.log_level, config.log_format)

    async def main() -> int:
        code = await run_node(config)
        exitguard.arm(code)  # the process's own shutdown may not hang on a stuck thread (utils/exitguard.py)
        return code

    return eventloop.run(main())


def check_files(config: NodeConfig) -> None:
    """Check the files whose contents only the chain layer reads (``--deployment``), before anything starts.

    ``config.py`` checks that the file is JSON; every field is checked here, as configuration never imports the
    market (it sits below it). Raises :class:`ConfigError` naming the flag.
    """
    if config.deployment is None:
        return
    # Imported here: the deployment module pulls in eth libraries, slow to import and needed only with the flag.
    from codex_node.errors import DeploymentFileError
    from codex_node.market.deployment import Deployment

    try:
        Deployment.load(config.deployment)  # every field present and well-formed
    except DeploymentFileError as e:
        raise ConfigError("--deployment", str(e)) from None


RUN = Command(
    name="run",
    help="run a storage node",
    description="Run a codex-node: REST API, block store, and (unless --no-marketplace) the marketplace.",
    add_arguments=_run_arguments,
    run=_run,
    epilog=_RUN_EPILOG,
)

# --- deploy (codex_node/deploycmd.py) -----------------------------------------------------------------------------


def _deploy_arguments(parser: argparse.ArgumentParser) -> None:
    from codex_node import deploycmd

    deploycmd.add_arguments(parser)


def _deploy(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from codex_node import deploycmd

    return deploycmd.run(args, env)


DEPLOY = Command(
    name="deploy",
    help="deploy the token and marketplace contracts to a chain",
    description="Deploy TestToken and Marketplace (dev configuration) to the chain at --eth-provider and print the "
    "deployment JSON (chain id, addresses, block) that 'run --deployment FILE' reads.",
    add_arguments=_deploy_arguments,
    run=_deploy,
    epilog="Without --eth-private-key, the provider must have --eth-account unlocked (Hardhat's dev accounts are).\n"
    "Exit codes: 0 deployed, 1 the chain refused or could not be reached, 2 invalid flags.",
)

# --- operator commands (codex_node/statuscmd.py, codex_node/keycmd.py) ----------------------------------------------


def _status_arguments(parser: argparse.ArgumentParser) -> None:
    from codex_node import statuscmd

    statuscmd.add_api_arguments(parser)


def _status(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from codex_node import statuscmd

    return statuscmd.run_status(args, env)


def _keygen_arguments(parser: argparse.ArgumentParser) -> None:
    from codex_node import keycmd

    keycmd.keygen_arguments(parser)


def _keygen(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from codex_node import keycmd

    return keycmd.run_keygen(args, env)


def _account_arguments(parser: argparse.ArgumentParser) -> None:
    from codex_node import keycmd

    keycmd.account_arguments(parser)


def _account(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from codex_node import keycmd

    return keycmd.run_account(args, env)


STATUS = Command(
    name="status",
    help="one screen about a running node: readiness, chain, account, storage, sales, alerts",
    description="Ask a running node (--api-url) for its state and print it as a table (or JSON with --json).",
    add_arguments=_status_arguments,
    run=_status,
    epilog="Exit codes: 0 the node is ready, 1 it is not ready or cannot be reached, 2 invalid flags.",
)
KEYGEN = Command(
    name="keygen",
    help="write a new node key to FILE (mode 600) and print its address",
    description="Create a new secp256k1 key for --eth-private-key. FILE must not exist; the key is never printed.",
    add_arguments=_keygen_arguments,
    run=_keygen,
    epilog="Exit codes: 0 written, 2 FILE exists or its directory does not.",
)
ACCOUNT = Command(
    name="account",
    help="address and balances of a key on a chain (or of a running node's account)",
    description="With --eth-provider: the gas and token balances of --eth-private-key/--eth-account on that chain "
    "(the token read from --deployment or --marketplace-address). Without it: the running node's GET /account.",
    add_arguments=_account_arguments,
    run=_account,
    epilog="Exit codes: 0 printed, 1 the chain or node could not be read, 2 invalid flags.",
)


# --- upload, download (codex_node/clientcli.py: thin layers over codex_node.client) ------------------------------


def _upload_arguments(parser: argparse.ArgumentParser) -> None:
    from codex_node import clientcli

    clientcli.add_upload_arguments(parser)


def _upload(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from codex_node import clientcli

    return clientcli.run_upload(args, env)


def _download_arguments(parser: argparse.ArgumentParser) -> None:
    from codex_node import clientcli

    clientcli.add_download_arguments(parser)


def _download(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from codex_node import clientcli

    return clientcli.run_download(args, env)


_CLIENT_EPILOG = (
    "Exit codes: 0 done, 1 the node refused or could not be reached, 2 invalid flags or arguments.\n"
    "--api-url and --api-token may also come from CODEX_API_URL and CODEX_API_TOKEN."
)

UPLOAD = Command(
    name="upload",
    help="upload a file to a running node; prints its CID",
    description="Upload FILE to the node at --api-url and print the dataset's CID (a progress bar on a terminal).",
    add_arguments=_upload_arguments,
    run=_upload,
    epilog=_CLIENT_EPILOG,
)

DOWNLOAD = Command(
    name="download",
    help="download a dataset from a running node",
    description="Download the dataset CID from the node at --api-url to -o FILE or standard output.",
    add_arguments=_download_arguments,
    run=_download,
    epilog=_CLIENT_EPILOG,
)


def _request_arguments(parser: argparse.ArgumentParser) -> None:
    from codex_node import clientcli

    clientcli.add_request_arguments(parser)


def _request(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from codex_node import clientcli

    return clientcli.run_request(args, env)


def _purchases_arguments(parser: argparse.ArgumentParser) -> None:
    from codex_node import clientcli

    clientcli.add_purchases_arguments(parser)


def _purchases(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from codex_node import clientcli

    return clientcli.run_purchases(args, env)


REQUEST = Command(
    name="request",
    help="request storage of an uploaded dataset; prints the purchase id",
    description="Ask the node at --api-url to erasure-code dataset CID into --nodes slots (any --nodes minus "
    "--tolerance of them rebuild it) and post a storage request for them; prints the purchase id.",
    add_arguments=_request_arguments,
    run=_request,
    epilog=_CLIENT_EPILOG,
)

PURCHASES = Command(
    name="purchases",
    help="list the node's purchases, or show one",
    description="List the purchases of the node at --api-url with their states, or show purchase ID with its "
    "request and transitions.",
    add_arguments=_purchases_arguments,
    run=_purchases,
    epilog=_CLIENT_EPILOG,
)


# --- check (codex_node/checkcmd.py) -------------------------------------------------------------------------------


def _check_arguments(parser: argparse.ArgumentParser) -> None:
    from codex_node import checkcmd

    checkcmd.add_arguments(parser)


def _check(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from codex_node import checkcmd

    return checkcmd.run(args, env)


CHECK = Command(
    name="check",
    help="check a running node: books, quota against blocks, hosted slots against the chain, ledger",
    description="Ask the node at --api-url to check its books, its repo's quota against its blocks, every slot it "
    "hosts against the chain, and its earnings ledger; print each problem.",
    add_arguments=_check_arguments,
    run=_check,
    epilog="Exit codes: 0 no problem, 1 problems found or the node could not be asked, 2 invalid flags.",
)


# --- scrub (codex_node/scrubcmd.py) -------------------------------------------------------------------------------


def _scrub_arguments(parser: argparse.ArgumentParser) -> None:
    from codex_node import scrubcmd

    scrubcmd.add_arguments(parser)


def _scrub(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from codex_node import scrubcmd

    return scrubcmd.run(args, env)


SCRUB = Command(
    name="scrub",
    help="read every stored block back (node stopped) and report corrupt ones with their datasets",
    description="Open the data dir of a stopped node, hash every stored block against its CID, and print each "
    "corrupt one with its pack, offset and the datasets that list it.",
    add_arguments=_scrub_arguments,
    run=_scrub,
    epilog="Exit codes: 0 every block sound, 1 corrupt blocks found, 2 invalid flags or a data dir in use.",
)

COMMANDS: tuple[Command, ...] = (
    RUN,
    DEPLOY,
    UPLOAD,
    DOWNLOAD,
    REQUEST,
    PURCHASES,
    STATUS,
    CHECK,
    SCRUB,
    KEYGEN,
    ACCOUNT,
)


def build_parser(commands: Sequence[Command] = COMMANDS) -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="Storage-provider node for a Codex-style storage marketplace.")
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=_Parser)
    for command in commands:
        p = sub.add_parser(
            command.name,
            help=command.help,
            description=command.description,
            epilog=command.epilog,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        command.add_arguments(p)
        p.set_defaults(_command=command)
    return parser


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    """Entry point of the ``codex-node`` console script; returns the exit code."""
    args = build_parser().parse_args(argv)
    command: Command = args._command
    try:
        return command.run(args, os.environ if env is None else env)
    except ConfigError as e:
        print(f"{PROG} {command.name}: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except (CodexError, OSError) as e:
        print(f"{PROG} {command.name}: error: {_one_line(e)}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:  # Ctrl-C before the node installed its own handler
        return 128 + 2


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


if __name__ == "__main__":
    sys.exit(main())
