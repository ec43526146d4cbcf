"""Postfix 3.7's defaults for the parameters mailmaps reads, as ``postconf -d`` prints them.

The texts are unexpanded, so they may refer to other parameters (``$myhostname``) and, for the
defaults that depend on ``compatibility_level``, hold the relational expressions Postfix itself
uses (``${{$compatibility_level} <level {2} ? {$mydestination} : {}}``).  Values that depend on
the machine (``myhostname``, ``mydomain``) are computed by :class:`mailmaps.config.MainConfig`.
Debian's build is the reference (``alias_maps = hash:/etc/aliases, nis:mail.aliases``);
``default_database_type`` is mailmaps' own choice, ``lmdb`` (Debian's Postfix says ``hash``).
A test compares every entry with the real ``postconf -d``.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["DEFAULTS", "MACHINE_DEPENDENT"]

#: Parameters whose default ``postconf -d`` computes from the machine.
MACHINE_DEPENDENT = frozenset({"myhostname", "mydomain", "mynetworks"})

#: name -> the default text, unexpanded.
DEFAULTS: Mapping[str, str] = {
    "access_map_defer_code": "450",
    "access_map_reject_code": "554",
    "address_verify_default_transport": "$default_transport",
    "address_verify_local_transport": "$local_transport",
    "address_verify_relay_transport": "$relay_transport",
    "address_verify_relayhost": "$relayhost",
    "address_verify_sender": "$double_bounce_sender",
    "address_verify_sender_dependent_default_transport_maps": (
        "$sender_dependent_default_transport_maps"
    ),
    "address_verify_sender_dependent_relayhost_maps": "$sender_dependent_relayhost_maps",
    "address_verify_transport_maps": "$transport_maps",
    "address_verify_virtual_transport": "$virtual_transport",
    "alias_database": "hash:/etc/aliases",
    "alias_maps": "hash:/etc/aliases, nis:mail.aliases",
    "allow_mail_to_commands": "alias, forward",
    "allow_mail_to_files": "alias, forward",
    "allow_min_user": "no",
    "allow_percent_hack": "yes",
    "allow_untrusted_routing": "no",
    "append_at_myorigin": "yes",
    "append_dot_mydomain": "${{$compatibility_level} <level {1} ? {yes} : {no}}",
    "biff": "yes",
    "canonical_classes": "envelope_sender, envelope_recipient, header_sender, header_recipient",
    "canonical_maps": "",
    "compatibility_level": "0",
    "default_privs": "nobody",
    "default_rbl_reply": (
        "$rbl_code Service unavailable; $rbl_class [$rbl_what] blocked using "
        "$rbl_domain${rbl_reason?; $rbl_reason}"
    ),
    "default_transport": "smtp",
    "defer_code": "450",
    "defer_transports": "",
    "double_bounce_sender": "double-bounce",
    "duplicate_filter_limit": "1000",
    "empty_address_default_transport_maps_lookup_key": "<>",
    "empty_address_recipient": "MAILER-DAEMON",
    "empty_address_relayhost_maps_lookup_key": "<>",
    "enable_original_recipient": "yes",
    "expand_owner_alias": "no",
    "fallback_transport": "",
    "fallback_transport_maps": "",
    "forward_expansion_filter": (
        "1234567890!@%-_=+:,./abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
    ),
    "forward_path": "$home/.forward${recipient_delimiter}${extension}, $home/.forward",
    "frozen_delivered_to": "yes",
    "helpful_warnings": "yes",
    "home_mailbox": "",
    "inet_interfaces": "all",
    "inet_protocols": "all",
    "invalid_hostname_reject_code": "501",
    "lmdb_map_size": "16777216",
    "local_header_rewrite_clients": "permit_inet_interfaces",
    "local_recipient_maps": "proxy:unix:passwd.byname $alias_maps",
    "local_transport": "local:$myhostname",
    "luser_relay": "",
    "mail_spool_directory": "/var/mail",
    "mail_version": "3.7.11",
    "mailbox_command": "",
    "mailbox_command_maps": "",
    "mailbox_transport": "",
    "mailbox_transport_maps": "",
    "maps_rbl_reject_code": "554",
    "masquerade_classes": "envelope_sender, header_sender, header_recipient",
    "masquerade_domains": "",
    "masquerade_exceptions": "",
    "multi_recipient_bounce_reject_code": "550",
    "mydestination": "$myhostname, localhost.$mydomain, localhost",
    "mynetworks_style": "${{$compatibility_level} <level {2} ? {subnet} : {host}}",
    "myorigin": "$myhostname",
    "non_fqdn_reject_code": "504",
    "owner_request_special": "yes",
    "parent_domain_matches_subdomains": (
        "debug_peer_list,fast_flush_domains,mynetworks,permit_mx_backup_networks,"
        "qmqpd_authorized_clients,relay_domains,smtpd_access_maps"
    ),
    "permit_mx_backup_networks": "",
    "plaintext_reject_code": "450",
    "propagate_unmatched_extensions": "canonical, virtual",
    "proxy_interfaces": "",
    "queue_directory": "/var/spool/postfix",
    "rbl_reply_maps": "",
    "receive_override_options": "",
    "recipient_canonical_classes": "envelope_recipient, header_recipient",
    "recipient_canonical_maps": "",
    "recipient_delimiter": "",
    "reject_code": "554",
    "reject_tempfail_action": "defer_if_permit",
    "relay_domains": "${{$compatibility_level} <level {2} ? {$mydestination} : {}}",
    "relay_domains_reject_code": "554",
    "relay_recipient_maps": "",
    "relay_transport": "relay",
    "relayhost": "",
    "relocated_maps": "",
    "remote_header_rewrite_domain": "",
    "require_home_directory": "no",
    "reset_owner_alias": "no",
    "resolve_dequoted_address": "yes",
    "resolve_null_domain": "no",
    "resolve_numeric_domain": "no",
    "sender_canonical_classes": "envelope_sender, header_sender",
    "sender_canonical_maps": "",
    "sender_dependent_default_transport_maps": "",
    "sender_dependent_relayhost_maps": "",
    "show_user_unknown_table_name": "yes",
    "smtp_generic_maps": "",
    "smtpd_authorized_xclient_hosts": "",
    "smtpd_client_restrictions": "",
    "smtpd_data_restrictions": "",
    "smtpd_delay_reject": "yes",
    "smtpd_end_of_data_restrictions": "",
    "smtpd_etrn_restrictions": "",
    "smtpd_expansion_filter": (
        "\\t\\40!\"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\\\]^_`"
        "abcdefghijklmnopqrstuvwxyz{|}~"
    ),
    "smtpd_forbid_unauth_pipelining": "no",
    "smtpd_helo_required": "no",
    "smtpd_helo_restrictions": "",
    "smtpd_log_access_permit_actions": "",
    "smtpd_null_access_lookup_key": "<>",
    "smtpd_policy_service_default_action": "451 4.3.5 Server configuration problem",
    "smtpd_policy_service_max_idle": "300s",
    "smtpd_policy_service_max_ttl": "1000s",
    "smtpd_policy_service_policy_context": "",
    "smtpd_policy_service_request_limit": "0",
    "smtpd_policy_service_retry_delay": "1s",
    "smtpd_policy_service_timeout": "100s",
    "smtpd_policy_service_try_limit": "2",
    "smtpd_recipient_limit": "1000",
    "smtpd_recipient_restrictions": "",
    "smtpd_reject_footer": "",
    "smtpd_reject_unlisted_recipient": "yes",
    "smtpd_reject_unlisted_sender": "no",
    "smtpd_relay_before_recipient_restrictions": (
        "${{$compatibility_level} <level {3.6} ? {no} : {yes}}"
    ),
    "smtpd_relay_restrictions": (
        "${{$compatibility_level} <level {1} ? {} : "
        "{permit_mynetworks, permit_sasl_authenticated, defer_unauth_destination}}"
    ),
    "smtpd_restriction_classes": "",
    "smtpd_sasl_auth_enable": "no",
    "smtpd_sender_login_maps": "",
    "smtpd_sender_restrictions": "",
    "smtputf8_enable": "${{$compatibility_level} <level {1} ? {no} : {yes}}",
    "soft_bounce": "no",
    "strict_mailbox_ownership": "yes",
    "strict_rfc821_envelopes": "no",
    "swap_bangpath": "yes",
    "transport_maps": "",
    "unknown_address_reject_code": "450",
    "unknown_address_tempfail_action": "$reject_tempfail_action",
    "unknown_client_reject_code": "450",
    "unknown_helo_hostname_tempfail_action": "$reject_tempfail_action",
    "unknown_hostname_reject_code": "450",
    "unknown_local_recipient_reject_code": "550",
    "unknown_relay_recipient_reject_code": "550",
    "unknown_virtual_alias_reject_code": "550",
    "unknown_virtual_mailbox_reject_code": "550",
    "unverified_recipient_defer_code": "450",
    "unverified_recipient_reject_code": "450",
    "unverified_recipient_reject_reason": "",
    "unverified_recipient_tempfail_action": "$reject_tempfail_action",
    "unverified_sender_defer_code": "450",
    "unverified_sender_reject_code": "450",
    "unverified_sender_reject_reason": "",
    "unverified_sender_tempfail_action": "$reject_tempfail_action",
    "virtual_alias_address_length_limit": "1000",
    "virtual_alias_domains": "$virtual_alias_maps",
    "virtual_alias_expansion_limit": "1000",
    "virtual_alias_maps": "$virtual_maps",
    "virtual_alias_recursion_limit": "1000",
    "virtual_gid_maps": "",
    "virtual_mailbox_base": "",
    "virtual_mailbox_domains": "$virtual_mailbox_maps",
    "virtual_mailbox_maps": "",
    "virtual_minimum_uid": "100",
    "virtual_transport": "virtual",
    "virtual_uid_maps": "",
}
