"""Differential tests of address resolution against a real Postfix's address verification.

Each seed generates a configuration that mixes the features resolution covers (canonical maps,
virtual alias domains and expansion, virtual mailbox domains, relay domains, transport_maps with
error/retry/discard and loopback nexthops, relocated_maps, aliases with owner- lists, commands,
files and :include:, recipient delimiters), starts a private real Postfix with it on loopback,
probes every address with ``sendmail -bv``, and compares each delivery status report with
``Resolver.resolve()``: the same final recipients with the same outcome, every case.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from mailmaps.resolver import FinalRecipient, Resolver
from mailmaps.testing.postfix import PostfixInstance, Verdict, check_nexthop

pytestmark = pytest.mark.interop

HOST = "mx.example.com"
SEEDS = int(os.environ.get("MAILMAPS_RESOLVE_SEEDS", "6"))

#: Nexthops where nothing listens: each transport gets its own, so reports tell them apart.
NEXTHOPS = ["[127.0.0.3]:2525", "[127.0.0.4]:2526", "[127.0.0.5]", "[127.0.0.6]:2527"]


@dataclass
class Scenario:
    """A generated configuration and the addresses to probe."""

    settings: dict[str, str] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)
    tables: dict[str, str] = field(default_factory=dict)  # lmdb tables: name -> source
    aliases: str = ""
    probes: list[str] = field(default_factory=list)


def generate(rng: random.Random, root: Path) -> Scenario:
    s = Scenario()
    etc = root / "etc"
    pick = rng.random
    myorigin = rng.choice(["$myhostname", "$mydomain"])
    # The reports go to root@$myorigin: it must be local.
    destinations = ["$myhostname, localhost, $mydomain"]
    if myorigin == "$myhostname":
        destinations.append("$myhostname, localhost")
    s.settings.update(
        {
            "myhostname": HOST,
            "mydomain": "example.com",
            "myorigin": myorigin,
            "mydestination": rng.choice(destinations),
            "recipient_delimiter": rng.choice(["", "+", "+-"]),
            "masquerade_exceptions": "root",
            # Level 0 turns on append_dot_mydomain and makes relay_domains = $mydestination.
            "compatibility_level": rng.choice(["3.6", "3.6", "2", "0"]),
        }
    )
    # Aliases (root stays out: the reports go there).
    aliases = ["webmaster: nobody", "staff: bin, daemon", "boss: webmaster", "OPS: |/bin/true"]
    aliases.append('echo: "|/bin/echo hello"')
    aliases.append("logs: /tmp/mailmaps-never-written")
    aliases.append("mixed: bin, far@relay.example")
    members = etc / "members"
    s.files["members"] = "# members\nbin\n|/bin/true\n/tmp/mailmaps-never-written-2\n"
    aliases.append(f"list: :include:{members}")
    if pick() < 0.5:
        aliases.append("owner-staff: bin")
    if pick() < 0.5:
        aliases.append("chain: staff, webmaster")
    s.aliases = "\n".join(aliases) + "\n"
    s.settings["alias_maps"] = f"lmdb:{etc}/aliases"
    s.settings["alias_database"] = f"lmdb:{etc}/aliases"
    probes = ["webmaster", "staff", "boss", "ops", "echo", "logs", "mixed", "list", "chain"]
    probes += ["bin", "nosuch", "Bin", "nobody@localhost", "webmaster+ext", "bob+p", "bin+"]
    # Virtual alias domains.
    valias = [
        "info@valias.example bin",
        "team@valias.example nobody, daemon@mx.example.com",
        "self@valias.example self@valias.example, bin",
        "fwd@valias.example far@relay.example",
        "@catch.example bin",
    ]
    if pick() < 0.5:
        valias.append("chain1@valias.example chain2@valias.example")
        valias.append("chain2@valias.example webmaster")
    if pick() < 0.3:
        # virtual_alias_domains left at its default, $virtual_alias_maps: the table's keys
        # name the domains (the "domain anything" convention of virtual(5)).
        valias += ["valias.example anything", "catch.example anything"]
    else:
        s.settings["virtual_alias_domains"] = "valias.example, catch.example"
    s.tables["virtual"] = "\n".join(valias) + "\n"
    s.settings["virtual_alias_maps"] = f"lmdb:{etc}/virtual"
    probes += ["info@valias.example", "team@valias.example", "team+z@valias.example"]
    probes += ["self@valias.example", "fwd@valias.example", "x@valias.example", "any@catch.example"]
    probes += ["chain1@valias.example"]
    # Virtual mailbox domain.
    s.tables["vmailbox"] = "u1@vmail.example u1/\nu2@vmail.example u2\n"
    s.settings.update(
        {
            "virtual_mailbox_domains": "vmail.example",
            "virtual_mailbox_maps": f"lmdb:{etc}/vmailbox",
            "virtual_mailbox_base": str(root / "vmail"),
            "virtual_uid_maps": "static:5000",
            "virtual_gid_maps": "static:5000",
        }
    )
    probes += ["u1@vmail.example", "u2@vmail.example", "u3@vmail.example"]
    # Relay domain and default class.
    s.settings["relay_domains"] = "relay.example"
    relay_hop, special_hop, bob_hop, default_hop = rng.sample(NEXTHOPS, 4)
    if pick() < 0.5:
        s.settings["relay_transport"] = f"relay:{relay_hop}"
    s.settings["relayhost"] = default_hop
    probes += ["far@relay.example", "bob@relay.example", "x@sub.relay.example", "y@far.example"]
    # Transport maps.
    transport = [
        f"special.example smtp:{special_hop}",
        "error.example error:5.7.1 no mail here",
        "plainerror.example error:go away",
        "retry.example retry:4.3.5 try later",
        "discard.example discard:silently gone",
        f"bob@relay.example smtp:{bob_hop}",
    ]
    for line in transport:
        check_nexthop(line.split(None, 1)[1])
    s.tables["transport"] = "\n".join(transport) + "\n"
    s.settings["transport_maps"] = f"lmdb:{etc}/transport"
    probes += [f"a@{d}.example" for d in ("special", "error", "plainerror", "retry", "discard")]
    # Relocated users.
    s.tables["relocated"] = "old@valias.example new@example.org\nolduser gone@example.net\n"
    s.settings["relocated_maps"] = f"lmdb:{etc}/relocated"
    probes += ["old@valias.example", "olduser"]
    # Canonical maps.
    canonical = ["canon@mx.example.com bin", "canondom@example.com staff"]
    s.tables["canonical"] = "\n".join(canonical) + "\n"
    s.settings["canonical_maps"] = f"lmdb:{etc}/canonical"
    probes += ["canon", "canondom@example.com"]
    if pick() < 0.5:
        s.files["canonical.pcre"] = (
            "/^upper[.](.*)@(.*)$/ ${1}@${2}\n/^rw-(.*)@/ $1@valias.example\n"
        )
        s.settings["recipient_canonical_maps"] = f"pcre:{etc}/canonical.pcre"
        probes += ["upper.bin@mx.example.com", "rw-info@elsewhere.example", "upper.x@far.example"]
    # Masquerading, when envelope recipients are in its classes.
    if pick() < 0.5:
        s.settings["masquerade_domains"] = rng.choice(
            ["example.com", "!mx.example.com, example.com"]
        )
        s.settings["masquerade_classes"] = "envelope_sender, envelope_recipient"
        probes += ["bin@sub.example.com", "nosuch@deep.sub.example.com"]
    # Extensions: which tables propagate an unmatched one.
    s.settings["propagate_unmatched_extensions"] = rng.choice(
        ["canonical, virtual", "canonical, virtual, alias, forward, include", "virtual"]
    )
    probes += ["staff+tag", "mixed+tag", "list+tag", "info+x@valias.example"]
    # .forward files in a private forward_path.
    fwd = root / "forward"
    s.files["../forward/bin.forward"] = "\\bin, daemon, far@relay.example\n"
    s.files["../forward/daemon.forward"] = '"|/bin/echo forwarded"\n'
    s.settings["forward_path"] = (
        f"{fwd}/$user.forward${{extension?+$extension}}, {fwd}/$user.forward"
    )
    if pick() < 0.5:
        s.settings["allow_mail_to_commands"] = rng.choice(["alias", "alias, forward, include"])
    probes += ["daemon+x"]
    # Unknown local users: luser_relay or a bounce.
    if pick() < 0.4:
        s.settings["luser_relay"] = rng.choice(["lost-$user@relay.example", "webmaster"])
    # Routing operators and literals.
    probes += ["relay.example!user", "user%relay.example@mx.example.com", '"a b"@valias.example']
    probes += ["bin@[127.0.0.1]", "user@1.2.3", "-opt", "MAILER-DAEMON", "postmaster"]
    probes += ["bin@localhost", "someone@nodot", "bin@mx"]
    # Sender-dependent routing: the probes come from root, rewritten to root@$myorigin.
    if pick() < 0.5:
        origin = HOST if myorigin == "$myhostname" else "example.com"
        hop = rng.choice(NEXTHOPS)
        check_nexthop(hop)
        if pick() < 0.5:
            s.settings["sender_dependent_relayhost_maps"] = f"inline:{{ root@{origin}={hop} }}"
        else:
            s.settings["sender_dependent_default_transport_maps"] = (
                f"inline:{{ root@{origin}=smtp:{hop} }}"
            )
    # A transport that master.cf does not define.
    s.tables["transport"] += "nosvc.example nosvc:[127.0.0.9]\n"
    probes += ["a@nosvc.example"]
    # A virtual alias loop: Postfix does not accept the message.
    if pick() < 0.3:
        s.tables["virtual"] += "loop1@valias.example loop2@valias.example\n"
        s.tables["virtual"] += "loop2@valias.example loop1@valias.example\n"
        s.settings["virtual_alias_recursion_limit"] = "20"
        probes += ["loop1@valias.example"]
    rng.shuffle(probes)
    s.probes = probes
    return s


def install(scenario: Scenario, postfix: PostfixInstance) -> None:
    for name, text in scenario.files.items():
        postfix.write(name, text)
    for name, text in scenario.tables.items():
        postfix.write_table(name, text)
    postfix.write_table("aliases", scenario.aliases, tool="postalias")


def with_port(nexthop: str | None, transport: str | None) -> str | None:
    """Where a client connects: a nexthop without a port gets the transport's default."""
    if nexthop is None or not nexthop.startswith("["):
        return nexthop
    if nexthop.endswith("]"):
        return nexthop + (":24" if transport == "lmtp" else ":25")
    return nexthop


Outcome = tuple[str, str | None, str | None, str]


def expected(verdicts: list[Verdict] | None) -> list[Outcome]:
    if verdicts is None:
        return [("(not accepted)", None, None, "")]
    out: list[Outcome] = []
    for v in verdicts:
        where = v.connected_to
        if where is not None:
            out.append((v.recipient, None, None, f"connect {where}"))
        else:
            out.append((v.recipient, v.action, v.status, v.text))
    return sorted(out)


def ours(recipients: tuple[FinalRecipient, ...]) -> list[Outcome]:
    out: list[Outcome] = []
    for r in recipients:
        if r.address_class is None:
            out.append(("(not accepted)", None, None, ""))
        elif r.status is None:
            out.append((r.address, None, None, f"connect {with_port(r.nexthop, r.transport)}"))
        else:
            out.append((r.address, r.status, r.dsn, r.text or ""))
    return sorted(out)


@pytest.mark.parametrize("seed", range(SEEDS))
def test_generated_configurations(seed: int, postfix_root: Path) -> None:
    root = postfix_root
    scenario = generate(random.Random(seed), root)
    postfix = PostfixInstance(root, scenario.settings)
    install(scenario, postfix)
    with postfix:
        reports = postfix.verify(scenario.probes, timeout=15)
    with Resolver.from_directory(postfix.config_dir) as resolver:
        mismatches = []
        for address in scenario.probes:
            got = ours(resolver.resolve(address, "root").recipients)
            want = expected(reports[address])
            if got != want:
                mismatches.append(f"{address}:\n  postfix: {want}\n  mailmaps: {got}")
    assert not mismatches, f"seed {seed}:\n" + "\n".join(mismatches)


def test_the_harness_refuses_non_loopback_nexthops(tmp_path: Path) -> None:
    from mailmaps.testing.postfix import UnsafeConfiguration

    for value in ("smtp:", "smtp:example.com", "relay:[192.0.2.1]", "[10.0.0.1]:25", "smtp"):
        with pytest.raises(UnsafeConfiguration):
            check_nexthop(value)
    for value in ("smtp:[127.0.0.3]:2525", "[::1]", "error:5.1.1 no", "discard:", "local"):
        check_nexthop(value)
    with pytest.raises(UnsafeConfiguration):
        PostfixInstance(tmp_path / "x", {"relayhost": "mail.example.com"})
    with pytest.raises(UnsafeConfiguration):
        PostfixInstance(tmp_path / "y", {"home_mailbox": "Maildir/"})
