"""``fakevoice report verify | key | rotate-key``: check a signed verdict report, show this
server's public key, replace the signing key (:mod:`fakevoice.signing`); ``fakevoice scores``:
EER and min t-DCF of a score file (:mod:`fakevoice.asvspoof_scores`)."""

from __future__ import annotations

import argparse

from fakevoice.cli import print_json, read_limited
from fakevoice.errors import InvalidSpecError


def cmd_verify(args: argparse.Namespace) -> int:
    from fakevoice import signing

    key = None
    if args.public_key is not None:
        key = signing.load_public_key(read_limited(args.public_key, "the public key", 64 * 1024))
    found = signing.verify_bytes(
        read_limited(args.file, "the report", signing.MAX_REPORT_BYTES), key
    )
    if args.json:
        print_json({"valid": found.valid, "key_id": found.key_id, "message": found.message})
    else:
        print(f"{args.file}: {found.message}")
    return 0 if found.valid else 1


def cmd_key(args: argparse.Namespace) -> int:
    from fakevoice import signing

    if args.json:
        print_json(
            {
                "algorithm": signing.ALGORITHM,
                "key_id": signing.key_id(),
                "public_key": signing.public_key_pem(),
                "retired": {
                    k: signing.public_key_pem(v) for k, v in signing.retired_keys().items()
                },
            }
        )
    else:
        print(f"# {signing.ALGORITHM} key {signing.key_id()} that signs this server's reports")
        print(signing.public_key_pem(), end="")
    return 0


def cmd_rotate(args: argparse.Namespace) -> int:
    from fakevoice import signing

    if not args.yes:
        raise InvalidSpecError(
            "This replaces the key that signs reports (reports signed before still verify "
            "here): add --yes."
        )
    old, new = signing.rotate_key()
    print(f"reports are now signed with key {new}; key {old} is kept to check older ones")
    return 0


def cmd_scores(args: argparse.Namespace) -> int:
    from fakevoice import asvspoof_scores

    cm = asvspoof_scores.read_any_cm_scores(args.cm)
    asv = asvspoof_scores.read_asv_scores(args.asv) if args.asv else None
    report = asvspoof_scores.asvspoof_report(cm, asv)
    if args.json:  # the files named, as the printed report names them
        print_json({"cm_file": args.cm, "asv_file": args.asv, **report})
        return 0
    print(
        f"{args.cm}: {report['n_bonafide']} bona fide, {report['n_spoof']} spoof trials; "
        f"EER {100 * report['eer']:.6f} %"
    )
    if report["min_tdcf"] is not None:
        print(f"min t-DCF {report['min_tdcf']:.6f} (ASVspoof 2019 cost model, ASV: {args.asv})")
    else:
        print("min t-DCF: give --asv with the organisers' ASV scores of the same partition")
    for attack, entry in report["per_attack"].items():
        tdcf = f"  min t-DCF {entry['min_tdcf']:.6f}" if entry["min_tdcf"] is not None else ""
        print(f"  {attack}: EER {100 * entry['eer']:.3f} %{tdcf}")
    for caution in report["cautions"]:
        print(f"caution: {caution}")
    return 0


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "scores",
        help="EER (pooled and per attack) and min t-DCF of a countermeasure's score file",
    )
    p.add_argument(
        "cm",
        help="ASVspoof CM scores (UTTERANCE ATTACK KEY SCORE lines), or a scores CSV of "
        "'fakevoice evaluate --scores' / a run's valid_scores.csv",
    )
    p.add_argument(
        "--asv", default=None, help="the organisers' ASV scores (SOURCE KEY SCORE) for the t-DCF"
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_scores)

    p = sub.add_parser("report", help="check a signed verdict report; this server's public key")
    actions = p.add_subparsers(dest="action", required=True)
    verify = actions.add_parser(
        "verify",
        help="is this JSON verdict report one this server signed, unchanged? (exit 0 yes, 1 no)",
    )
    verify.add_argument("file", help="a JSON verdict report")
    verify.add_argument(
        "--public-key",
        default=None,
        metavar="PEM",
        help="check it with this public key (another server's) instead of this server's",
    )
    verify.add_argument("--json", action="store_true")
    verify.set_defaults(handler=cmd_verify)
    key = actions.add_parser("key", help="this server's public key for reports (PEM)")
    key.add_argument("--json", action="store_true")
    key.set_defaults(handler=cmd_key)
    rotate = actions.add_parser(
        "rotate-key", help="sign with a new key from now on (the old one still checks old reports)"
    )
    rotate.add_argument("--yes", action="store_true")
    rotate.set_defaults(handler=cmd_rotate)
