//! The first bytes of a payload, and what they say: the application protocol as Suricata
//! names it in `app_proto`, and whether the side that sent them is the client or the
//! server. A few comparisons on at most [`Head::LEN`] bytes, asked once per side of a
//! flow (its first payload), never per packet.

/// The first bytes of a TCP or UDP payload, as far as the capture holds them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Head {
    bytes: [u8; Head::LEN],
    len: u8,
}

impl Head {
    /// Bytes kept: enough for every signature below.
    pub const LEN: usize = 8;

    /// No payload.
    pub const NONE: Head = Head { bytes: [0; Head::LEN], len: 0 };

    #[inline]
    pub fn of(payload: &[u8]) -> Head {
        let len = payload.len().min(Head::LEN);
        let mut bytes = [0; Head::LEN];
        bytes[..len].copy_from_slice(&payload[..len]);
        Head { bytes, len: len as u8 }
    }

    pub fn bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// An application protocol, named as Suricata's `app_proto` names it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AppProto {
    /// No payload seen yet.
    #[default]
    Unknown,
    /// Payload seen, and none of the protocols below.
    Failed,
    Tls,
    Http,
    Smtp,
    Imap,
    Pop3,
    Dcerpc,
    Smb,
    Ldap,
    Dns,
}

impl AppProto {
    /// Suricata's name; `None` before any payload.
    pub fn name(self) -> Option<&'static str> {
        Some(match self {
            AppProto::Unknown => return None,
            AppProto::Failed => "failed",
            AppProto::Tls => "tls",
            AppProto::Http => "http",
            AppProto::Smtp => "smtp",
            AppProto::Imap => "imap",
            AppProto::Pop3 => "pop3",
            AppProto::Dcerpc => "dcerpc",
            AppProto::Smb => "smb",
            AppProto::Ldap => "ldap",
            AppProto::Dns => "dns",
        })
    }

    /// The flow's protocol from what each side's first payload said: the side that was
    /// recognised (the client's when both were), `failed` when payload came and none was.
    pub fn of_flow(client: AppProto, server: AppProto) -> AppProto {
        match (client, server) {
            (AppProto::Unknown | AppProto::Failed, known) if known > AppProto::Failed => known,
            (AppProto::Unknown, other) => other,
            (known, _) => known,
        }
    }
}

/// Which end of a conversation sends such bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Speaker {
    Client,
    Server,
    /// Either could (an SMB or LDAP message, application data of a TLS session).
    Either,
}

/// What a side's first payload says: its protocol, and who speaks so.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Said {
    pub app: AppProto,
    pub speaker: Speaker,
    /// The words that decided, for `policy.detail` ("a TLS ClientHello").
    pub what: &'static str,
}

const FAILED: Said = Said { app: AppProto::Failed, speaker: Speaker::Either, what: "payload" };

/// Classifies the first payload of one side of a TCP (`tcp`) or UDP flow.
pub fn classify(head: &Head, tcp: bool) -> Said {
    let b = head.bytes();
    let said = |app, speaker, what| Said { app, speaker, what };
    let Some(&first) = b.first() else {
        return Said { app: AppProto::Unknown, speaker: Speaker::Either, what: "" };
    };
    if !tcp {
        return dns(b, 0).unwrap_or(FAILED);
    }
    // A TLS record: content type 20-23, version 3.x; a handshake's type says who sends it.
    if (20..=23).contains(&first) && b.get(1) == Some(&3) && b.get(2).is_some_and(|&minor| minor <= 4) {
        return match (first, b.get(5)) {
            (22, Some(1)) => said(AppProto::Tls, Speaker::Client, "a TLS ClientHello"),
            (22, Some(2)) => said(AppProto::Tls, Speaker::Server, "a TLS ServerHello"),
            _ => said(AppProto::Tls, Speaker::Either, "a TLS record"),
        };
    }
    let starts = |word: &[u8]| b.len() >= word.len() && b[..word.len()].eq_ignore_ascii_case(word);
    const HTTP_METHODS: [&[u8]; 10] = [
        b"GET ", b"POST ", b"HEAD ", b"PUT ", b"DELETE", b"OPTIONS", b"CONNECT", b"PATCH ", b"TRACE ",
        b"RPC_",
    ];
    if HTTP_METHODS.iter().any(|m| starts(&m[..m.len().min(Head::LEN)])) {
        return said(AppProto::Http, Speaker::Client, "an HTTP request line");
    }
    if starts(b"HTTP/1.") || starts(b"HTTP/2") {
        return said(AppProto::Http, Speaker::Server, "an HTTP status line");
    }
    if starts(b"EHLO ") || starts(b"HELO ") || starts(b"MAIL FRO") {
        return said(AppProto::Smtp, Speaker::Client, "an SMTP EHLO, HELO or MAIL FROM");
    }
    if b.len() >= 4 && &b[..3] == b"220" && matches!(b[3], b' ' | b'-') {
        return said(AppProto::Smtp, Speaker::Server, "an SMTP 220 greeting");
    }
    if starts(b"* OK") || starts(b"* PREAUTH") {
        return said(AppProto::Imap, Speaker::Server, "an IMAP * OK greeting");
    }
    if starts(b"+OK") {
        return said(AppProto::Pop3, Speaker::Server, "a POP3 +OK greeting");
    }
    if [&b"USER "[..], b"CAPA", b"APOP ", b"STLS"].iter().any(|w| starts(w)) {
        return said(AppProto::Pop3, Speaker::Client, "a POP3 command");
    }
    // DCE/RPC connection-oriented PDU: version 5.0, then the PDU type.
    if first == 5 && b.get(1) == Some(&0) {
        if let Some(&kind) = b.get(2) {
            match kind {
                0 | 11 | 14 => return said(AppProto::Dcerpc, Speaker::Client, "a DCE/RPC request or bind"),
                2 | 12 | 13 | 15 => {
                    return said(AppProto::Dcerpc, Speaker::Server, "a DCE/RPC response or bind ack")
                }
                _ => {}
            }
        }
    }
    // SMB over a NetBIOS session header.
    if first == 0 && b.len() >= 8 && matches!(b[4], 0xfe | 0xff) && &b[5..8] == b"SMB" {
        return said(AppProto::Smb, Speaker::Either, "an SMB message");
    }
    // An LDAP message: a BER SEQUENCE whose first element is the INTEGER message id.
    if first == 0x30 {
        let id_at = match b.get(1) {
            Some(&n) if n < 0x80 => Some(2),
            Some(&n) if (0x81..=0x84).contains(&n) => Some(2 + usize::from(n - 0x80)),
            _ => None,
        };
        if id_at.and_then(|at| b.get(at)) == Some(&0x02) {
            return said(AppProto::Ldap, Speaker::Either, "an LDAP message");
        }
    }
    // DNS over TCP: a two-byte length, then the header.
    dns(b, 2).unwrap_or(FAILED)
}

/// A DNS header at `at`: one question, a standard query or its response, zero bits zero.
fn dns(b: &[u8], at: usize) -> Option<Said> {
    let h = b.get(at..at + 6)?;
    let (flags, questions) = (h[2], u16::from_be_bytes([h[4], h[5]]));
    let opcode = (flags >> 3) & 0x0f;
    if questions != 1 || opcode != 0 || h[3] & 0x40 != 0 {
        return None;
    }
    Some(if flags & 0x80 == 0 {
        Said { app: AppProto::Dns, speaker: Speaker::Client, what: "a DNS query" }
    } else {
        Said { app: AppProto::Dns, speaker: Speaker::Server, what: "a DNS response" }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn said(bytes: &[u8]) -> (AppProto, Speaker) {
        let s = classify(&Head::of(bytes), true);
        (s.app, s.speaker)
    }

    #[test]
    fn first_payloads_name_protocol_and_speaker() {
        use AppProto::*;
        use Speaker::*;
        assert_eq!(said(&[22, 3, 1, 0, 200, 1, 0, 0, 196]), (Tls, Client));
        assert_eq!(said(&[22, 3, 3, 0, 90, 2, 0, 0]), (Tls, Server));
        assert_eq!(said(&[23, 3, 3, 1, 0, 0xab]), (Tls, Either), "application data, mid-stream");
        assert_eq!(said(b"GET / HTTP/1.1\r\n"), (Http, Client));
        assert_eq!(said(b"RPC_IN_DATA /rpc"), (Http, Client), "Outlook Anywhere");
        assert_eq!(said(b"HTTP/1.1 200 OK"), (Http, Server));
        assert_eq!(said(b"EHLO mail.contoso.example\r\n"), (Smtp, Client));
        assert_eq!(said(b"220 mx.contoso.example Microsoft ESMTP MAIL Service"), (Smtp, Server));
        assert_eq!(said(b"* OK The Microsoft Exchange IMAP4 service is ready."), (Imap, Server));
        assert_eq!(said(b"+OK The Microsoft Exchange POP3 service is ready."), (Pop3, Server));
        assert_eq!(said(&[5, 0, 11, 3, 16, 0, 0, 0]), (Dcerpc, Client));
        assert_eq!(said(&[5, 0, 12, 3, 16, 0, 0, 0]), (Dcerpc, Server));
        assert_eq!(said(&[0, 0, 0, 0x44, 0xfe, b'S', b'M', b'B']), (Smb, Either));
        assert_eq!(said(&[0x30, 0x84, 0, 0, 0, 0x30, 0x02, 0x01]), (Ldap, Either));
        assert_eq!(said(&[0x30, 0x0c, 0x02, 0x01, 0x01, 0x60]), (Ldap, Either));
        assert_eq!(said(b"\x00\x1d\x12\x34\x01\x00\x00\x01"), (Dns, Client), "DNS over TCP");
        assert_eq!(said(b"SSH-2.0-OpenSSH_9.2"), (Failed, Either));
        assert_eq!(said(b""), (Unknown, Either));
        let udp = classify(&Head::of(b"\x12\x34\x81\x80\x00\x01\x00\x01"), false);
        assert_eq!((udp.app, udp.speaker), (Dns, Server));
    }

    #[test]
    fn a_flow_takes_the_side_that_was_recognised() {
        use AppProto::*;
        assert_eq!(
            AppProto::of_flow(Failed, Imap),
            Imap,
            "an IMAP client's tagged command is not recognised"
        );
        assert_eq!(AppProto::of_flow(Http, Failed), Http);
        assert_eq!(AppProto::of_flow(Tls, Tls), Tls);
        assert_eq!(AppProto::of_flow(Failed, Unknown), Failed);
        assert_eq!(AppProto::of_flow(Unknown, Unknown), Unknown);
        assert_eq!(AppProto::of_flow(Unknown, Smtp), Smtp);
    }

    #[test]
    fn a_head_keeps_at_most_its_length_and_never_panics() {
        for n in 0..20 {
            let bytes: Vec<u8> = (0..n).map(|i| i as u8 ^ 0x16).collect();
            let head = Head::of(&bytes);
            assert_eq!(head.bytes(), &bytes[..n.min(Head::LEN)]);
            let _ = classify(&head, true);
            let _ = classify(&head, false);
        }
    }
}
