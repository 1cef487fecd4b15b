"""The node's configuration: one frozen :class:`NodeConfig`, resolved from four sources.

Precedence, lowest to highest: the defaults below < a TOML file (``--config-file``; keys are flag names without
the dashes, ``data-dir`` or ``data_dir``) < environment variables ``CODEX_<FLAG_NAME>`` (``CODEX_API_PORT``) <
command-line flags. Every value is checked before anything starts; a bad one raises :class:`ConfigError` naming
the flag, whatever source it came from, and the source is said in the message.

The :class:`Option` table is the one description of every flag: the CLI builds its parser and ``--help`` from
it, and other commands (``codex-node deploy``) pick the options they share from it with :func:`option`.
This module reads the files its flags name (config file, key file, deployment file) and nothing else; it
starts nothing.
"""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import json
import os
import re
import stat
import tomllib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Literal, cast
from urllib.parse import urlsplit

import platformdirs

from codex_node.errors import ConfigError
from codex_node.logutils import LOG_FORMATS, parse_level
from codex_node.units import format_duration, format_size, parse_duration, parse_size
from codex_node.utils.redact import redact_url, register_url

ENV_PREFIX = "CODEX_"

ChainMode = Literal["embedded", "remote", "none"]


def default_data_dir() -> Path:
    """``~/.cache/codex`` on Linux (the platform's user cache dir elsewhere), as nim-codex."""
    return Path(platformdirs.user_cache_dir("codex"))


@dataclass(frozen=True)
class NodeConfig:
    """Everything ``codex-node run`` needs to know. Field names are the flag names with underscores."""

    data_dir: Path = field(default_factory=default_data_dir)
    api_bindaddr: str = "127.0.0.1"
    api_port: int = 8080
    storage_quota: int = 20 * 1024**3
    block_ttl: int = 30 * 86400
    block_mi: int = 10 * 60
    block_mn: int = 1000
    log_level: str = "info"
    log_format: str = "text"
    metrics: bool = False
    metrics_address: str = "127.0.0.1"
    metrics_port: int = 8008
    alert_webhook: str | None = None
    api_allowed_hosts: tuple[str, ...] = ()
    api_token: Path | None = None
    api_allow_unauthenticated: bool = False
    api_max_downloads: int = 32
    verify_reads: bool = False
    buffered_writes: bool = False
    config_file: Path | None = None
    bootstrap_nodes: tuple[str, ...] = ()
    api_announce_urls: tuple[str, ...] = ()
    max_peers: int = 160
    # --- marketplace: parsed and checked here, wired by the chain and sales layers ---
    marketplace: bool = True
    eth_provider: str | None = None
    eth_private_key: Path | None = None
    eth_account: str | None = None
    marketplace_address: str | None = None
    deployment: Path | None = None
    dev_block_time: int = 1
    eth_confirmations: int = 0
    eth_resend_after: int = 90
    eth_max_fee_per_gas: int | None = None
    """Wei per gas (the flag is in gwei)."""
    validator: bool = False
    validator_groups: int | None = None
    validator_group_index: int = 0
    simulate_proof_failures: int = 0
    max_slot_queue_size: int = 128
    max_slot_workers: int = 3

    def __post_init__(self) -> None:
        _check_combinations(self)

    @property
    def chain_mode(self) -> ChainMode:
        """``embedded`` (no ``--eth-provider``: an in-process chain), ``remote``, or ``none`` (no marketplace)."""
        if not self.marketplace:
            return "none"
        return "embedded" if self.eth_provider is None else "remote"


def open_api_warning(c: NodeConfig) -> str | None:
    """What to tell an operator whose API listens beyond loopback with no token (allowed only by
    ``--api-allow-unauthenticated``, which the container image sets): anyone reaching the port may use it.
    ``None`` when a token guards the API or it listens on loopback only."""
    if c.api_token is not None or ipaddress.ip_address(c.api_bindaddr).is_loopback:
        return None
    return (
        f"the API listens on {c.api_bindaddr} without a token: whoever reaches the port may use it; keep it on "
        "loopback (in a container: publish it as -p 127.0.0.1:PORT:PORT) or pass a token with --api-token FILE "
        "(CODEX_API_TOKEN=FILE; a file of 16+ characters, mode 600)"
    )


def _check_combinations(c: NodeConfig) -> None:
    """Rules between flags; each names the flag an operator should change."""
    if c.api_token is None and not c.api_allow_unauthenticated and not ipaddress.ip_address(c.api_bindaddr).is_loopback:
        raise ConfigError(
            "--api-bindaddr",
            f"{c.api_bindaddr} is not a loopback address and the API has no --api-token FILE: anyone who reaches it "
            "could use it; give --api-token FILE, or --api-allow-unauthenticated if a proxy in front guards it",
        )
    if c.max_slot_workers > c.max_slot_queue_size:
        raise ConfigError(
            "--max-slot-workers",
            f"{c.max_slot_workers} workers exceed --max-slot-queue-size {c.max_slot_queue_size}",
        )
    if not c.marketplace:
        for flag, value in (
            ("--eth-provider", c.eth_provider),
            ("--eth-private-key", c.eth_private_key),
            ("--eth-account", c.eth_account),
            ("--marketplace-address", c.marketplace_address),
            ("--deployment", c.deployment),
        ):
            if value is not None:
                raise ConfigError(flag, "has no effect with --no-marketplace; remove one of the two")
        if c.validator:
            raise ConfigError("--validator", "a validator needs the marketplace; remove --no-marketplace")
    if c.eth_private_key is not None and c.eth_account is not None:
        raise ConfigError("--eth-account", "give either --eth-account or --eth-private-key, not both")
    if c.marketplace_address is not None and c.deployment is not None:
        raise ConfigError("--marketplace-address", "give either --marketplace-address or --deployment, not both")
    if c.eth_provider is None:
        for flag, value in (("--marketplace-address", c.marketplace_address), ("--deployment", c.deployment)):
            if value is not None:
                raise ConfigError(flag, "needs --eth-provider (the embedded chain deploys its own contracts)")
    elif c.marketplace:
        if c.eth_private_key is None and c.eth_account is None:
            raise ConfigError("--eth-provider", "a remote chain needs --eth-private-key FILE or --eth-account ADDRESS")
        if c.marketplace_address is None and c.deployment is None:
            raise ConfigError("--eth-provider", "a remote chain needs --marketplace-address or --deployment FILE")
    if not c.validator:
        if c.validator_groups is not None:
            raise ConfigError("--validator-groups", "only applies with --validator")
        if c.validator_group_index != 0:
            raise ConfigError("--validator-group-index", "only applies with --validator")
    groups = 1 if c.validator_groups is None else c.validator_groups
    if c.validator_group_index >= groups:
        raise ConfigError(
            "--validator-group-index",
            f"{c.validator_group_index} is not below --validator-groups ({c.validator_groups or 'not set'})",
        )


DEFAULTS = NodeConfig()


# --- value parsers: text → value, or ValueError saying what is wrong ------------------------------------------


def _int_in(low: int, high: int | None = None) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            n = int(text.strip())
        except ValueError:
            raise ValueError(f"'{text}' is not a whole number") from None
        if n < low or (high is not None and n > high):
            bound = f"at least {low}" if high is None else f"between {low} and {high}"
            raise ValueError(f"{n} is out of range (must be {bound})")
        return n

    return parse


def _port(text: str) -> int:
    return _int_in(0, 65535)(text)


def _ip(text: str) -> str:
    try:
        return str(ipaddress.ip_address(text.strip()))
    except ValueError:
        raise ValueError(f"'{text}' is not an IP address (e.g. 127.0.0.1, 0.0.0.0, ::1)") from None


_HOST_RE = re.compile(r"^(\*|[A-Za-z0-9_]([A-Za-z0-9_.-]{0,251}[A-Za-z0-9_])?|\[[0-9A-Fa-f:.]+\])$")


def _host_name(text: str) -> str:
    """A host name or IP address as clients write it in ``Host`` (no port), lower-cased; ``*`` means any."""
    value = text.strip().lower()
    try:
        address = ipaddress.ip_address(value.strip("[]"))
    except ValueError:
        if not _HOST_RE.match(value):
            raise ValueError(f"'{text}' is not a host name or IP address (e.g. node.example.org, 10.0.0.5)") from None
        return value
    return f"[{address}]" if address.version == 6 else str(address)


def _size(text: str) -> int:
    n = parse_size(text)
    if n <= 0:
        raise ValueError(f"'{text}' must be more than zero bytes")
    return n


def _duration(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        n = parse_duration(text)
        if n < minimum:
            raise ValueError(f"'{text}' is shorter than {format_duration(minimum)}")
        return n

    return parse


WEI_PER_GWEI = 10**9


def _gwei(text: str) -> int:
    """A fee in gwei (``50``, ``1.5``; at most 9 decimals: whole wei) → wei."""
    try:
        gwei = Decimal(text.strip())
    except InvalidOperation:
        raise ValueError(f"'{text}' is not a number of gwei (e.g. 50 or 1.5)") from None
    if not gwei.is_finite() or gwei <= 0:
        raise ValueError(f"'{text}' must be more than 0 gwei")
    wei = gwei * WEI_PER_GWEI
    if wei != wei.to_integral_value():
        raise ValueError(f"'{text}' is finer than one wei (at most 9 decimals)")
    return int(wei)


def _show_gwei(v: object) -> str:
    return f"{Decimal(v) / WEI_PER_GWEI:f} gwei" if isinstance(v, int) else str(v)


def _log_format(text: str) -> str:
    value = text.strip().lower()
    if value not in LOG_FORMATS:
        raise ValueError(f"'{text}' is not a log format (use {' or '.join(LOG_FORMATS)})")
    return value


def _url(schemes: Sequence[str]) -> Callable[[str], str]:
    def parse(text: str) -> str:
        value = text.strip()
        parts = urlsplit(value)
        if parts.scheme not in schemes or not parts.hostname:
            raise ValueError(f"'{redact_url(text)}' is not a URL of the form {'|'.join(schemes)}://host:port")
        try:
            parts.port  # noqa: B018 - raises on a non-numeric port
        except ValueError:
            raise ValueError(f"'{redact_url(text)}' has an invalid port") from None
        register_url(value)  # from now on no log line or error shows its credentials (utils/redact.py)
        return value.rstrip("/")

    return parse


_SPR_RE = re.compile(r"^spr:[A-Za-z0-9_-]{1,4096}$")


def _peer_address(text: str) -> str:
    """A peer's API URL, or its signed record (``spr:…``; checked in full by the network when the node starts)."""
    value = text.strip()
    if value.startswith("spr:"):
        if not _SPR_RE.match(value):
            raise ValueError("is not a peer record (spr: followed by at most 4096 base64url characters)")
        return value
    return _url(("http", "https"))(value)


def _dir_path(text: str) -> Path:
    if not text.strip():
        raise ValueError("is empty")
    path = Path(text).expanduser().absolute()
    if path.exists() and not path.is_dir():
        raise ValueError(f"{path} exists and is not a directory")
    return path


def _file_path(text: str) -> Path:
    if not text.strip():
        raise ValueError("is empty")
    path = Path(text).expanduser().absolute()
    if not path.is_file():
        raise ValueError(f"{path} is not a readable file")
    return path


_ADDRESS_RE = re.compile(r"^0x[0-9a-fA-F]{40}$")
_KEY_RE = re.compile(r"^(0x)?[0-9a-fA-F]{64}$")


def _address(text: str) -> str:
    value = text.strip()
    if not _ADDRESS_RE.match(value):
        raise ValueError(f"'{text}' is not an Ethereum address (0x followed by 40 hex digits)")
    # Imported here: eth_utils is slow to import and only needed when an address is given.
    from eth_utils.address import is_checksum_address, to_checksum_address

    mixed_case = value[2:] != value[2:].lower() and value[2:] != value[2:].upper()
    if mixed_case and not is_checksum_address(value):
        raise ValueError(f"'{text}' has a wrong EIP-55 checksum (mistyped?)")
    return str(to_checksum_address(value))


def read_private_key(path: Path) -> bytes:
    """The 32-byte secp256k1 key in ``path`` (64 hex digits, optional ``0x``), refused if others may read it.

    The chain layer loads the key with this function; configuration calls it only to check the file early.
    Raises :class:`ValueError` (the message never contains key material).
    """
    text = _private_file_text(path)
    if not _KEY_RE.match(text):
        raise ValueError(f"{path} does not hold a private key (64 hex digits, optionally prefixed by 0x)")
    return bytes.fromhex(text.removeprefix("0x"))


def _private_file_text(path: Path) -> str:
    """The stripped text of a secret file, refused unless it is a regular file only its owner may access."""
    st = path.stat()
    if not stat.S_ISREG(st.st_mode):
        raise ValueError(f"{path} is not a regular file")
    if os.name == "posix" and st.st_mode & 0o077:
        raise ValueError(
            f"{path} is accessible by group or others (mode {stat.S_IMODE(st.st_mode):04o}); run chmod 600 on it"
        )
    return path.read_text(encoding="ascii", errors="replace").strip()


_TOKEN_RE = re.compile(r"^[\x21-\x7e]{16,512}$")


def read_api_token(path: Path) -> bytes:
    """The REST API's bearer token in ``path`` (16 to 512 printable ASCII characters, no spaces), refused if
    others may read it (the rule of :func:`read_private_key`). Raises :class:`ValueError` (never with the token).
    """
    text = _private_file_text(path)
    if not _TOKEN_RE.match(text):
        raise ValueError(f"{path} does not hold an API token (16 to 512 printable characters without spaces)")
    return text.encode("ascii")


def _token_file(text: str) -> Path:
    path = _file_path(text)
    read_api_token(path)
    return path


def _key_file(text: str) -> Path:
    path = _file_path(text)
    read_private_key(path)
    return path


def _deployment_file(text: str) -> Path:
    path = _file_path(text)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path} is not a JSON file: {e}") from None
    if not isinstance(doc, dict):
        raise ValueError(f"{path} does not hold a JSON object")  # noqa: TRY004 - parsers report ValueError
    # Its fields are the chain layer's to read: the CLI checks them before the node starts (cli.check_files), as
    # configuration sits below the market and never imports it.
    return path


_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


def parse_bool(text: str) -> bool:
    value = text.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"'{text}' is not a boolean (use true or false)")


# --- the option table ------------------------------------------------------------------------------------------

Kind = Literal["value", "bool", "list"]
Raw = str | bool | list[str]


@dataclass(frozen=True)
class Option:
    """One flag. ``parse`` turns one text value into the config value (for a list option: one item)."""

    flag: str
    help: str
    parse: Callable[[str], object] = str
    kind: Kind = "value"
    metavar: str | None = None
    show: Callable[[object], str] = str  # renders the default in --help
    field_name: str | None = None  # defaults to the flag name with underscores
    group: str = "node"

    @property
    def name(self) -> str:
        """The flag without dashes: also its key in the config file."""
        return self.flag.removeprefix("--")

    @property
    def field(self) -> str:
        return self.field_name or self.name.replace("-", "_")

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.name.upper().replace("-", "_")

    def default_text(self) -> str | None:
        value = getattr(DEFAULTS, self.field, None)
        if value is None or value == ():
            return None
        return self.show(value)


def _show_size(v: object) -> str:
    return format_size(v) if isinstance(v, int) else str(v)


def _show_duration(v: object) -> str:
    return format_duration(v) if isinstance(v, int) else str(v)


def _show_bool(v: object) -> str:
    return "on" if v else "off"


OPTIONS: tuple[Option, ...] = (
    Option("--data-dir", "where blocks and metadata are kept", _dir_path, metavar="DIR"),
    Option("--api-bindaddr", "IP address the REST API listens on", _ip, metavar="IP"),
    Option("--api-port", "port of the REST API (0 picks a free port)", _port, metavar="PORT"),
    Option(
        "--api-allowed-host",
        "a Host name the API answers besides loopback names and --api-bindaddr (repeatable; * allows any; "
        "in the environment: comma-separated); other Hosts get 421",
        _host_name,
        kind="list",
        metavar="HOST",
        field_name="api_allowed_hosts",
    ),
    Option(
        "--api-token",
        "file holding a token (16+ printable characters) that every API and metrics request must send as "
        "'Authorization: Bearer <token>'; refused if group or others may read it",
        _token_file,
        metavar="FILE",
    ),
    Option(
        "--api-allow-unauthenticated",
        "allow --api-bindaddr to be a non-loopback address without --api-token",
        kind="bool",
        show=_show_bool,
    ),
    Option(
        "--api-max-downloads",
        "dataset downloads served at once; more get 503 with Retry-After",
        _int_in(1, 100_000),
        metavar="N",
    ),
    Option(
        "--storage-quota",
        "bytes the node may use for blocks (20GiB, 500MB, 1048576)",
        _size,
        metavar="SIZE",
        show=_show_size,
    ),
    Option(
        "--block-ttl",
        "how long a stored block is kept (30d, 1h, 10s, or seconds)",
        _duration(1),
        metavar="DURATION",
        show=_show_duration,
    ),
    Option(
        "--block-mi",
        "interval between block maintenance passes",
        _duration(1),
        metavar="DURATION",
        show=_show_duration,
    ),
    Option("--block-mn", "blocks examined per maintenance pass", _int_in(1), metavar="N"),
    Option(
        "--verify-reads",
        "hash every block a download reads and cut the download at a corrupt one (proofs and single blocks are "
        "always checked); costs about half the download speed",
        kind="bool",
        show=_show_bool,
    ),
    Option(
        "--buffered-writes",
        "write blocks through the page cache; by default a group of blocks (256 KiB or more) is written directly "
        "(O_DIRECT), which costs a fraction of the CPU and leaves the page cache to reads (a file system that "
        "refuses direct writes falls back by itself)",
        kind="bool",
        show=_show_bool,
    ),
    Option(
        "--log-level",
        "debug|info|warning|error|critical (nim-codex's trace, notice, warn and fatal work too)",
        parse_level,
        metavar="LEVEL",
    ),
    Option(
        "--log-format",
        "text (key=value, for people) or json (one object per line)",
        _log_format,
        metavar="FORMAT",
    ),
    Option("--metrics", "serve Prometheus metrics on --metrics-address:--metrics-port", kind="bool", show=_show_bool),
    Option("--metrics-address", "IP address the metrics endpoint listens on", _ip, metavar="IP"),
    Option("--metrics-port", "port of the metrics endpoint /metrics (0 picks a free port)", _port, metavar="PORT"),
    Option(
        "--alert-webhook",
        "URL the node POSTs each alert raised or cleared to, as JSON (its secrets are kept out of the logs)",
        _url(("http", "https")),
        metavar="URL",
    ),
    Option(
        "--bootstrap-node",
        "a peer to learn the network from: its API URL (http://host:port) or its signed record (spr:…, from "
        "GET /spr) (repeatable; in the environment: comma-separated)",
        _peer_address,
        kind="list",
        metavar="URL|SPR",
        field_name="bootstrap_nodes",
    ),
    Option(
        "--api-announce-url",
        "URL at which peers reach this node's API, put in its signed peer record (repeatable, at most 8; "
        "in the environment: comma-separated); default: http://--api-bindaddr:--api-port, needed when that is "
        "0.0.0.0 or ::",
        _url(("http", "https")),
        kind="list",
        metavar="URL",
        field_name="api_announce_urls",
    ),
    Option("--max-peers", "peers this node keeps in its table at most", _int_in(1, 10_000), metavar="N"),
    Option(
        "--marketplace",
        "take part in the storage marketplace; --no-marketplace runs storage only and the market API answers 503",
        kind="bool",
        show=_show_bool,
        group="marketplace",
    ),
    Option(
        "--eth-provider",
        "JSON-RPC URL of a remote chain; without it the node runs an embedded chain",
        _url(("http", "https", "ws", "wss")),
        metavar="URL",
        group="marketplace",
    ),
    Option(
        "--eth-private-key",
        "file holding the node's private key (hex); refused if group or others may read it",
        _key_file,
        metavar="FILE",
        group="marketplace",
    ),
    Option(
        "--eth-account",
        "address of an account the provider has unlocked (dev chains), instead of --eth-private-key",
        _address,
        metavar="ADDRESS",
        group="marketplace",
    ),
    Option(
        "--marketplace-address",
        "address of the marketplace contract on the remote chain",
        _address,
        metavar="ADDRESS",
        group="marketplace",
    ),
    Option(
        "--deployment",
        "deployment JSON written by 'codex-node deploy' (instead of --marketplace-address)",
        _deployment_file,
        metavar="FILE",
        group="marketplace",
    ),
    Option(
        "--eth-confirmations",
        "blocks a marketplace event must be buried under before the node acts on it (0: at once)",
        _int_in(0, 1000),
        metavar="N",
        group="marketplace",
    ),
    Option(
        "--eth-resend-after",
        "how long a transaction may stay unmined before it is sent again with its nonce (and a higher fee if the "
        "chain wants one)",
        _duration(1),
        metavar="DURATION",
        show=_show_duration,
        group="marketplace",
    ),
    Option(
        "--eth-max-fee-per-gas",
        "the most, in gwei, any transaction offers per gas however often it is sent again (50, 1.5); while the chain "
        "asks for more, a transaction waits at the cap (a warning, metric codex_chain_transactions_at_fee_cap); "
        "default: no cap",
        _gwei,
        metavar="GWEI",
        show=_show_gwei,
        group="marketplace",
    ),
    Option(
        "--dev-block-time",
        "embedded chain only: time between mined blocks (whole seconds, at least 1s)",
        _duration(1),
        metavar="DURATION",
        show=_show_duration,
        group="marketplace",
    ),
    Option(
        "--validator",
        "after each proof period, mark the missing proofs of the watched filled slots (needs gas only)",
        kind="bool",
        show=_show_bool,
        group="marketplace",
    ),
    Option(
        "--validator-groups",
        "split the slot-id space into N groups (2..65535; a slot's group: its id modulo N); the validator watches one",
        _int_in(2, 65535),
        metavar="N",
        group="marketplace",
    ),
    Option(
        "--validator-group-index",
        "the group this validator watches (below --validator-groups)",
        _int_in(0),
        metavar="N",
        group="marketplace",
    ),
    Option(
        "--simulate-proof-failures",
        "for tests: send a wrong proof every N-th period a proof is due (1 = every one, 0 = never)",
        _int_in(0),
        metavar="N",
        group="marketplace",
    ),
    Option("--max-slot-queue-size", "slots queued for sale at most", _int_in(1), metavar="N", group="marketplace"),
    Option(
        "--max-slot-workers",
        "slots being sold at once (at most --max-slot-queue-size)",
        _int_in(1),
        metavar="N",
        group="marketplace",
    ),
)

CONFIG_FILE = Option("--config-file", 'TOML file with flag names as keys (data-dir = "…")', _file_path, metavar="FILE")


def add_options(parser: argparse.ArgumentParser, options: Sequence[Option]) -> None:
    """Add ``options`` to ``parser``. Defaults stay unset so :func:`given` sees only what was typed."""
    groups: dict[str, argparse._ArgumentGroup] = {}
    for opt in options:
        group = groups.get(opt.group)
        if group is None:
            group = groups[opt.group] = parser.add_argument_group(f"{opt.group} options")
        default = opt.default_text()
        notes = ([f"default: {default}"] if default is not None else []) + [f"env: {opt.env}"]
        text = f"{opt.help} [{'; '.join(notes)}]".replace("%", "%%")
        if opt.kind == "bool":
            group.add_argument(
                opt.flag, dest=opt.field, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS, help=text
            )
        elif opt.kind == "list":
            group.add_argument(
                opt.flag, dest=opt.field, action="append", metavar=opt.metavar, default=argparse.SUPPRESS, help=text
            )
        else:
            group.add_argument(opt.flag, dest=opt.field, metavar=opt.metavar, default=argparse.SUPPRESS, help=text)


def given(args: argparse.Namespace, options: Sequence[Option]) -> dict[str, Raw]:
    """The flags typed on the command line, keyed by field, as raw text (lists for repeatable flags)."""
    present = vars(args)
    return {opt.field: present[opt.field] for opt in options if opt.field in present}


def option(flag: str) -> Option:
    """The option for ``flag`` (for commands that share flags with ``run``)."""
    for opt in (*OPTIONS, CONFIG_FILE):
        if opt.flag == flag:
            return opt
    raise KeyError(flag)


# --- resolution -------------------------------------------------------------------------------------------------


def read_config_file(path: Path) -> dict[str, object]:
    """The TOML file's top-level table. Raises :class:`ConfigError` naming ``--config-file``."""
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except OSError as e:
        raise ConfigError(CONFIG_FILE.flag, f"cannot read {path}: {e.strerror or e}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(CONFIG_FILE.flag, f"{path} is not valid TOML: {e}") from None


def _file_values(options: Iterable[Option], doc: Mapping[str, object], path: Path) -> dict[str, object]:
    """Map the file's keys (either spelling) to option fields; unknown keys are errors, not silently ignored."""
    by_key = {opt.name: opt for opt in options}
    out: dict[str, object] = {}
    seen: dict[str, str] = {}
    for key, value in doc.items():
        name = key.replace("_", "-")
        opt = by_key.get(name)
        if opt is None:
            raise ConfigError(CONFIG_FILE.flag, f"{path}: unknown key '{key}'")
        if name in seen:
            raise ConfigError(opt.flag, f"set twice in {path} ('{seen[name]}' and '{key}')")
        seen[name] = key
        out[opt.field] = value
    return out


def _from_text(opt: Option, raw: Raw) -> object:
    """One option's raw value (CLI/env text, TOML value normalised to text) → config value."""
    if opt.kind == "bool":
        return raw if isinstance(raw, bool) else parse_bool(str(raw))
    if opt.kind == "list":
        items = raw if isinstance(raw, list) else [s for s in str(raw).split(",") if s.strip()]
        return tuple(opt.parse(item) for item in items)
    return opt.parse(str(raw))


def _toml_raw(opt: Option, value: object) -> Raw:
    """Check a TOML value's type for ``opt``; numbers become text so one parser handles every source."""
    if opt.kind == "bool":
        if not isinstance(value, bool):
            raise ValueError(f"expected true or false, got {value!r}")
        return value
    if opt.kind == "list":
        if isinstance(value, str):
            return [value]
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return [str(v) for v in value]
        raise ValueError(f"expected a string or a list of strings, got {value!r}")
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError(f"expected a string or a number, got {value!r}")  # noqa: TRY004 - reported as a bad value
    return str(value)


def resolve(
    options: Sequence[Option],
    *,
    cli: Mapping[str, Raw],
    env: Mapping[str, str],
    file: Mapping[str, object] | None = None,
    file_path: Path | None = None,
) -> dict[str, object]:
    """Parsed values of the options that any source sets, keyed by field, the highest-precedence source winning.

    ``cli`` holds only the flags given on the command line (keyed by field); ``file`` is a config file's table.
    """
    file_fields = _file_values(options, file or {}, file_path or Path("config file"))
    out: dict[str, object] = {}
    for opt in options:
        try:
            if opt.field in cli:
                out[opt.field] = _from_text(opt, cli[opt.field])
            elif opt.env in env:
                try:
                    out[opt.field] = _from_text(opt, env[opt.env])
                except ValueError as e:
                    raise ValueError(f"{e} (from {opt.env})") from None
            elif opt.field in file_fields:
                try:
                    out[opt.field] = _from_text(opt, _toml_raw(opt, file_fields[opt.field]))
                except ValueError as e:
                    raise ValueError(f"{e} (from {file_path})") from None
        except ValueError as e:
            raise ConfigError(opt.flag, str(e)) from None
        except OSError as e:  # a file named by the flag vanished or is unreadable between checks
            raise ConfigError(opt.flag, str(e)) from None
    return out


def load_node_config(cli: Mapping[str, Raw], env: Mapping[str, str]) -> NodeConfig:
    """The configuration of ``codex-node run`` from the given flags and environment (and the file they name)."""
    file_path: Path | None = None
    file: dict[str, object] = {}
    chosen = resolve((CONFIG_FILE,), cli=cli, env=env).get(CONFIG_FILE.field)
    if isinstance(chosen, Path):
        file_path = chosen
        file = read_config_file(chosen)
    values = resolve(OPTIONS, cli=cli, env=env, file=file, file_path=file_path)
    # Each value comes from the parser of its own option, so its type is the field's.
    return dataclasses.replace(DEFAULTS, config_file=file_path, **cast("dict[str, Any]", values))
