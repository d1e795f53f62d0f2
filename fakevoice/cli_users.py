"""``fakevoice user create | list | delete | admin | sign-out | token``: accounts, for the
operator.

The operator acts as :data:`fakevoice.accounts.OPERATOR` (an administrator): whoever runs the CLI
on the server can read its database anyway.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from typing import Any

from fakevoice.cli import print_json
from fakevoice.errors import InvalidSpecError, NotFoundError


def _read_password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        line = sys.stdin.readline()
        return line[:-1] if line.endswith("\n") else line
    if not sys.stdin.isatty():
        raise InvalidSpecError(
            "No terminal to ask for the password on; pipe it in with --password-stdin."
        )
    first = getpass.getpass("Password: ")
    if getpass.getpass("Repeat it: ") != first:
        raise InvalidSpecError("The two passwords differ; nothing was created.")
    return first


def _user_id(username: str) -> int:
    from fakevoice import accounts

    user = accounts.user_by_username(username)
    if user is None:
        raise NotFoundError(f"There is no user called {username!r}; `fakevoice user list`.")
    return user.id


def cmd_create(args: argparse.Namespace) -> int:
    from fakevoice import accounts

    password = _read_password(args)
    user = accounts.register(
        args.username,
        password,
        email=args.email,
        display_name=args.name,
        is_admin=args.admin,
    )
    role = "administrator" if user.is_admin else "user"
    print(f"created {role} {user.username} (id {user.id})")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from fakevoice import accounts, store

    store.init_db()
    rows: list[dict[str, Any]] = [
        {
            "id": u.id,
            "username": u.username,
            "name": u.display_name,
            "email": u.email,
            "admin": u.is_admin,
            "password": u.password_hash is not None,
            "created": u.created_at.isoformat(timespec="seconds"),
        }
        for u in accounts.list_users(accounts.OPERATOR)
    ]
    if args.json:
        print_json(rows)
        return 0
    for row in rows:
        role = "admin" if row["admin"] else "user"
        print(f"{row['id']:>5}  {row['username']:<32} {role:<5}  {row['email'] or '-'}")
    return 0


def _is_cli_account(user_id: int) -> bool:
    """Whether ``user_id`` is the account the command line acts as (``FAKEVOICE_CLI_USER``)."""
    from fakevoice import accounts
    from fakevoice.settings import get_settings

    own = accounts.user_by_username(get_settings().cli_user)
    return own is not None and own.id == user_id


def cmd_delete(args: argparse.Namespace) -> int:
    from fakevoice import accounts, store

    store.init_db()
    user_id = _user_id(args.username)
    cli_account = _is_cli_account(user_id)
    if cli_account and not (args.yes and args.cli_account):
        # Every `fakevoice train`, import and test so far belongs to it, whoever typed them.
        raise InvalidSpecError(
            f"{args.username} is the account this command line acts as (FAKEVOICE_CLI_USER): "
            "deleting it removes every run, model, dataset and verdict made with `fakevoice` "
            "commands and cannot be undone; the next command starts a new, empty account. "
            "Add --yes --cli-account to go on."
        )
    if not args.yes:
        raise InvalidSpecError(
            f"Deleting user {args.username} removes their runs, models, datasets and verdicts "
            "and cannot be undone: add --yes to go on."
        )
    from fakevoice.services import profile  # imports the training engine: only when needed

    user = profile.delete_user(accounts.OPERATOR, user_id)
    print(f"deleted user {user.username} with their runs, models, datasets and verdicts")
    if cli_account:
        print(f"the next `fakevoice` command acts as a new, empty account {user.username}")
    from fakevoice.tracking import finish_forgetting

    finish_forgetting(lambda text: print(text, file=sys.stderr))
    return 0


def cmd_admin(args: argparse.Namespace) -> int:
    from fakevoice import store
    from fakevoice.store.users import set_admin

    store.init_db()
    user_id = _user_id(args.username)
    with store.session_scope() as session:
        user = set_admin(session, user_id, not args.revoke)
    print(f"{user.username} is {'now' if user.is_admin else 'no longer'} an administrator")
    return 0


def cmd_sign_out(args: argparse.Namespace) -> int:
    from fakevoice import accounts, sign_ins, store
    from fakevoice.services import tokens

    store.init_db()
    user_id = _user_id(args.username)
    # The tokens first: should that fail, nothing is done yet.
    revoked = tokens.revoke_all_tokens(accounts.OPERATOR, user_id) if args.revoke_tokens else None
    user = sign_ins.end_all_sessions(accounts.OPERATOR, user_id)
    ended = f"{user.username} is signed out in every browser"
    if revoked is None:
        print(f"{ended} (API tokens still work)")
    else:
        print(f"{ended}; {tokens.tokens_in_words(revoked)} revoked")
    return 0


def _token_owner(username: str | None) -> Any:
    """The account whose tokens a ``user token`` command handles: ``username``'s, or the command
    line's own (``FAKEVOICE_CLI_USER``)."""
    from fakevoice import services, store
    from fakevoice.store.records import Actor

    if username is None:
        return services.cli_actor()
    store.init_db()
    with store.session_scope(readonly=True) as session:
        user = store.get_user_by_username(session, username)
    if user is None:
        raise NotFoundError(f"There is no user called {username!r}; `fakevoice user list`.")
    return Actor(user_id=user.id, is_admin=user.is_admin)


def cmd_token(args: argparse.Namespace) -> int:
    """API tokens from the server's shell (a headless server has no browser for the Profile)."""
    from fakevoice.services import tokens

    if args.token_command == "revoke":  # any account's, by id: a leaked token goes at once
        from fakevoice import accounts, store

        if args.all == (args.id is not None):
            raise InvalidSpecError("Name one token's id, or --all for every active token.")
        if args.all:
            owner = _token_owner(args.user)
            count = tokens.revoke_all_tokens(accounts.OPERATOR, owner.user_id)
            print(f"{tokens.tokens_in_words(count)} revoked")
            return 0
        if args.user is not None:
            raise InvalidSpecError("--user goes with --all; a token's id names its account.")
        store.init_db()
        record = tokens.revoke_token(accounts.OPERATOR, args.id)
        print(f"token {record.id} '{record.name}' revoked")
        return 0
    owner = _token_owner(args.user)
    if args.token_command == "create":
        scope = "verdicts" if args.verdicts_only else "full"
        record, secret = tokens.create_token(owner, args.name, scope)
        if args.json:
            print_json({"id": record.id, "name": record.name, "scope": scope, "token": secret})
        else:
            print(secret)
            print(
                f"token {record.id} '{record.name}' ({scope}): shown once, keep it now",
                file=sys.stderr,
            )
        return 0
    rows = [
        {
            "id": t.id,
            "name": t.name,
            "starts_with": t.prefix,
            "scope": t.scope,
            "created": t.created_at.isoformat(timespec="seconds"),
            "last_used": t.last_used_at.isoformat(timespec="seconds") if t.last_used_at else None,
            "revoked": t.revoked_at.isoformat(timespec="seconds") if t.revoked_at else None,
        }
        for t in tokens.list_tokens(owner)
    ]
    if args.json:
        print_json(rows)
        return 0
    for row in rows:
        state = "revoked" if row["revoked"] else row["scope"]
        print(f"{row['id']:>5}  {row['name']:<32} {row['starts_with']}…  {state}")
    return 0


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    users = sub.add_parser("user", help="create, list and delete accounts (server operator)")
    usub = users.add_subparsers(dest="user_command", required=True)

    p = usub.add_parser("create", help="create an account with a password")
    p.add_argument("username")
    p.add_argument("--admin", action="store_true", help="may see all runs and remove users")
    p.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    p.add_argument("--email", default=None, help="where password resets are sent")
    p.add_argument("--name", default=None, help="display name (default: the user name)")
    p.set_defaults(handler=cmd_create)

    p = usub.add_parser("list", help="every account")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_list)

    p = usub.add_parser("delete", help="delete an account with its runs, models and verdicts")
    p.add_argument("username")
    p.add_argument("--yes", action="store_true", help="really delete (it cannot be undone)")
    p.add_argument(
        "--cli-account",
        action="store_true",
        help="with --yes: really delete the account this command line acts as "
        "(FAKEVOICE_CLI_USER), and all that `fakevoice` commands made",
    )
    p.set_defaults(handler=cmd_delete)

    p = usub.add_parser("admin", help="make an existing account an administrator")
    p.add_argument("username")
    p.add_argument("--revoke", action="store_true", help="take the role away instead")
    p.set_defaults(handler=cmd_admin)

    p = usub.add_parser("sign-out", help="end every browser sign-in of an account")
    p.add_argument("username")
    p.add_argument("--revoke-tokens", action="store_true", help="revoke all its API tokens too")
    p.set_defaults(handler=cmd_sign_out)

    p = usub.add_parser("token", help="API tokens of an account: create, list, revoke")
    tsub = p.add_subparsers(dest="token_command", required=True)
    for name, text in (
        ("create", "a new token; its secret is printed once, on stdout"),
        ("list", "the account's tokens, revoked ones included"),
        ("revoke", "revoke one by id, or every active one of an account"),
    ):
        t = tsub.add_parser(name, help=text)
        if name == "create":
            t.add_argument("name", help="what it is for, e.g. 'call centre'")
            t.add_argument(
                "--verdicts-only",
                action="store_true",
                help="it may only ask for verdicts and read or label the history",
            )
        if name == "revoke":
            t.add_argument("id", type=int, nargs="?", help="the token's id (any account's)")
            t.add_argument(
                "--all", action="store_true", help="every active token of the account (--user)"
            )
        t.add_argument(
            "--user", default=None, help="whose (default: the command line's own account)"
        )
        if name != "revoke":
            t.add_argument("--json", action="store_true")
        t.set_defaults(handler=cmd_token)
