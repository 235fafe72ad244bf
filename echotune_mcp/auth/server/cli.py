"""``echotune-mcp auth-server``: serve | user add | user reset-mfa | user list | keys rotate."""

from __future__ import annotations

import argparse
import getpass
import sys

from .settings import AuthServerSettings


def _settings(args: argparse.Namespace) -> AuthServerSettings:
    return AuthServerSettings.from_env(data_dir=args.data_dir, host=getattr(args, "host", None),
                                       port=getattr(args, "port", None), issuer=getattr(args, "issuer", None))


def _store(args: argparse.Namespace):
    from .store import Store

    return Store(_settings(args).state_dir)


def _read_password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("password: ")
    if getpass.getpass("again: ") != first:
        raise ValueError("the two passwords differ")
    return first


def _print_otp(uri: str) -> None:
    print("Add this to an authenticator app (scan it as a QR code or paste it):")
    print(uri)


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from .app import create_app

    settings = _settings(args)
    app = create_app(settings)
    print(f"echotune-mcp auth-server: issuer {settings.issuer}, listening on {settings.host}:{settings.port}",
          file=sys.stderr, flush=True)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning", proxy_headers=False,
                http="h11")  # the same HTTP parser as the resource server, whatever else is installed
    return 0


def cmd_user_add(args: argparse.Namespace) -> int:
    from .users import add_user

    _subject, uri = add_user(_store(args), args.username, _read_password(args), totp=args.totp)
    print(f"user {args.username!r} added" + (" with a TOTP second factor" if uri else ""))
    if uri:
        _print_otp(uri)
    return 0


def cmd_user_reset_mfa(args: argparse.Namespace) -> int:
    from .users import reset_mfa

    uri = reset_mfa(_store(args), args.username, totp=args.totp)
    print(f"user {args.username!r}: second factor removed and every refresh token revoked"
          + ("; a new TOTP seed is enrolled" if uri else ""))
    if uri:
        _print_otp(uri)
    return 0


def cmd_user_list(args: argparse.Namespace) -> int:
    for row in _store(args).list_users():
        print(f"{row['username']}\tsub={row['subject']}\t{'totp' if row['mfa'] else 'password only'}")
    return 0


def cmd_keys_rotate(args: argparse.Namespace) -> int:
    from . import keys

    settings = _settings(args)
    from .store import Store

    kid = keys.rotate(Store(settings.state_dir), settings.access_token_ttl_s)
    print(f"new signing key {kid}; the previous key stays in the JWKS for {settings.access_token_ttl_s + keys.SKEW_S}"
          " s, until the last token it signed has expired")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="echotune-mcp auth-server",
                                description="the bundled OAuth authorization server for self-hosted EchoTune")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("serve", help="run the authorization server")
    s.add_argument("--host", default=None, help="bind address (ECHOTUNE_AUTH_SERVER_HOST, default 127.0.0.1)")
    s.add_argument("--port", type=int, default=None, help="port (ECHOTUNE_AUTH_SERVER_PORT, default 8780)")
    s.add_argument("--issuer", default=None, help="public https origin (ECHOTUNE_AUTH_SERVER_ISSUER)")
    s.set_defaults(func=cmd_serve)

    u = sub.add_parser("user", help="user add | reset-mfa | list")
    usub = u.add_subparsers(dest="user_command", required=True)
    ua = usub.add_parser("add", help="add a user (password prompted, or one line on stdin)")
    ua.add_argument("username")
    ua.add_argument("--totp", action="store_true", help="enrol a TOTP second factor and print its otpauth URI")
    ua.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    ua.set_defaults(func=cmd_user_add)
    ur = usub.add_parser("reset-mfa", help="remove a user's second factor and revoke their refresh tokens")
    ur.add_argument("username")
    ur.add_argument("--totp", action="store_true", help="enrol a new TOTP seed at once and print its URI")
    ur.set_defaults(func=cmd_user_reset_mfa)
    ul = usub.add_parser("list", help="list users")
    ul.set_defaults(func=cmd_user_list)

    k = sub.add_parser("keys", help="keys rotate")
    ksub = k.add_subparsers(dest="keys_command", required=True)
    kr = ksub.add_parser("rotate", help="sign with a new key; the old one stays published until its tokens expire")
    kr.set_defaults(func=cmd_keys_rotate)
    for leaf in (s, ua, ur, ul, kr):
        leaf.add_argument("--data-dir", default=None, help="state lives in DATA_DIR/auth-server (ECHOTUNE_DATA_DIR)")
    return p


def auth_server_main(argv: list[str]) -> int:
    from .users import UserError

    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (UserError, ValueError) as exc:
        print(f"echotune-mcp auth-server: {exc}", file=sys.stderr)
        return 2
