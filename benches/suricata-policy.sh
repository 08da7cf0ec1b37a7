# The Exchange policy as Suricata sees it, shared by benches/peers.sh and
# benches/live-replay.sh so both time Suricata on the same rules. Sourced, not run.
#
#   suricata_vars    the `vars:` section of a suricata.yaml: the example organization's
#                    addresses (rules/topology.toml, which the generator models)
#   suricata_rules   nine port rules standing for the policy's findings, one alert per
#                    TCP connection attempt (flags:S,12 matches the first SYN, ignoring
#                    ECN bits, not the SYN-ACK), as exwatch judges once per flow

suricata_vars() {
  cat <<'YAML'
vars:
  address-groups:
    HOME_NET: "[10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,2001:db8::/32]"
    EXTERNAL_NET: "!$HOME_NET"
    MAILBOX: "[10.10.1.11,10.10.1.12,10.10.2.11,2001:db8:10::11]"
    EDGE: "[172.16.0.25]"
    DOMAIN_CONTROLLERS: "[10.10.0.5,10.10.0.6]"
    CLIENTS: "[10.20.0.0/16]"
    EXCHANGE_CORE: "[$MAILBOX,$DOMAIN_CONTROLLERS,10.10.3.20]"
  port-groups:
    HTTP_PORTS: "80"
YAML
}

suricata_rules() {
  cat <<'RULES'
alert tcp !$EXCHANGE_CORE any -> $MAILBOX 80 (msg:"client-http: unencrypted web to Mailbox"; flow:to_server; flags:S,12; sid:9100001; rev:1;)
alert tcp !$EXCHANGE_CORE any -> $MAILBOX [110,143] (msg:"client-imap4-plaintext, client-pop3-plaintext: IMAP4/POP3 in clear"; flow:to_server; flags:S,12; sid:9100002; rev:1;)
alert tcp $EXTERNAL_NET any -> $MAILBOX 25 (msg:"inbound-smtp-bypasses-edge"; flow:to_server; flags:S,12; sid:9100003; rev:1;)
alert tcp $EXTERNAL_NET any -> $MAILBOX ![25,80,443,587,993,995,110,143] (msg:"external-to-mailbox"; flow:to_server; flags:S,12; sid:9100004; rev:1;)
alert tcp $MAILBOX any -> $EXTERNAL_NET 25 (msg:"outbound-smtp-bypasses-edge"; flow:to_server; flags:S,12; sid:9100005; rev:1;)
alert tcp $MAILBOX any -> $EXTERNAL_NET ![25,53] (msg:"mailbox-to-external"; flow:to_server; flags:S,12; sid:9100006; rev:1;)
alert tcp $EDGE any -> $EXTERNAL_NET [23,80,1080,1081,3128,6588] (msg:"edge-open-proxy-probe"; flow:to_server; flags:S,12; sid:9100007; rev:1;)
alert tcp $EDGE any -> $MAILBOX !25 (msg:"edge-unsubscribed-site"; flow:to_server; flags:S,12; sid:9100008; rev:1;)
alert tcp $EDGE any -> [$CLIENTS,$DOMAIN_CONTROLLERS] any (msg:"edge-perimeter"; flow:to_server; flags:S,12; sid:9100009; rev:1;)
RULES
}
