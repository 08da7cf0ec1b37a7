//! The first bytes of a payload, and what they say: the application protocol as Suricata
//! names it in `app_proto`, and whether the side that sent them is the client or the
//! server. A few comparisons on at most [`Head::LEN`] bytes, asked once per side of a
//! flow (its first payload), never per packet.
//!
//! Eight bytes cannot hold a banner, so one thing is read from the whole TCP payload
//! while it is in hand: whether it is what only Exchange says ([`Exchange`]: its SMTP,
//! IMAP4 and POP3 greetings, an RPC bind to its MAPI interfaces). Decoding cannot know
//! which payload is a side's first, so that look is kept to payloads whose first byte
//! can start one of them (`2`, `*`, `+`, a DCE/RPC version 5), and past that first
//! byte to greetings and binds: a data segment costs one comparison.

/// The first bytes of a TCP or UDP payload, as far as the capture holds them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Head {
    bytes: [u8; Head::LEN],
    len: u8,
    /// What the whole payload said of Exchange (TCP only).
    exchange: Exchange,
}

impl Head {
    /// Bytes kept: enough for every signature below.
    pub const LEN: usize = 8;

    /// No payload.
    pub const NONE: Head = Head { bytes: [0; Head::LEN], len: 0, exchange: Exchange::Nothing };

    #[inline(always)]
    pub fn of(payload: &[u8]) -> Head {
        // Every packet with a payload comes here: a copy of a fixed length compiles to
        // one load, where a copy of a variable one was a call to memmove (2% of a run).
        let (bytes, len) = match payload.first_chunk::<{ Head::LEN }>() {
            Some(first) => (*first, Head::LEN),
            None => {
                let mut bytes = [0; Head::LEN];
                bytes[..payload.len()].copy_from_slice(payload);
                (bytes, payload.len())
            }
        };
        Head { bytes, len: len as u8, exchange: Exchange::Nothing }
    }

    /// [`Head::of`] a TCP payload, with what the whole of it says of Exchange.
    #[inline(always)]
    pub fn of_tcp(payload: &[u8]) -> Head {
        let mut head = Head::of(payload);
        if matches!(payload.first(), Some(b'2' | b'*' | b'+' | 5)) {
            head.exchange = Exchange::said(payload);
        }
        head
    }

    /// What the payload said of Exchange.
    pub fn exchange(&self) -> Exchange {
        self.exchange
    }

    pub fn bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// What a payload says that only Exchange says: a server's greeting, or a client's RPC
/// bind to an Exchange interface (the server that answers it serves that interface).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Exchange {
    #[default]
    Nothing,
    /// "220 ... Microsoft ESMTP MAIL Service ..." (also "220-", a multi-line greeting).
    SmtpGreeting,
    /// "* OK The Microsoft Exchange IMAP4 service is ready."
    Imap4Greeting,
    /// "+OK The Microsoft Exchange POP3 service is ready."
    Pop3Greeting,
    /// A DCE/RPC bind or alter_context naming EMSMDB (MAPI), a4f1db00-ca47-1067-b31f-00dd010662da.
    EmsmdbBind,
    /// A DCE/RPC bind or alter_context naming NSPI (the address book), f5cc5a18-4264-101a-8c59-08002b2f8426.
    NspiBind,
}

/// The interfaces' UUIDs as NDR writes them little-endian (the first three fields
/// byte-swapped), and big-endian.
const EMSMDB_LE: [u8; 16] =
    [0x00, 0xdb, 0xf1, 0xa4, 0x47, 0xca, 0x67, 0x10, 0xb3, 0x1f, 0x00, 0xdd, 0x01, 0x06, 0x62, 0xda];
const EMSMDB_BE: [u8; 16] =
    [0xa4, 0xf1, 0xdb, 0x00, 0xca, 0x47, 0x10, 0x67, 0xb3, 0x1f, 0x00, 0xdd, 0x01, 0x06, 0x62, 0xda];
const NSPI_LE: [u8; 16] =
    [0x18, 0x5a, 0xcc, 0xf5, 0x64, 0x42, 0x1a, 0x10, 0x8c, 0x59, 0x08, 0x00, 0x2b, 0x2f, 0x84, 0x26];
const NSPI_BE: [u8; 16] =
    [0xf5, 0xcc, 0x5a, 0x18, 0x42, 0x64, 0x10, 0x1a, 0x8c, 0x59, 0x08, 0x00, 0x2b, 0x2f, 0x84, 0x26];

impl Exchange {
    /// Every mark, in the order evidence names them.
    pub const ALL: [Exchange; 5] = [
        Exchange::EmsmdbBind,
        Exchange::NspiBind,
        Exchange::SmtpGreeting,
        Exchange::Imap4Greeting,
        Exchange::Pop3Greeting,
    ];

    /// What a whole TCP payload says of Exchange.
    #[cold]
    fn said(b: &[u8]) -> Exchange {
        // A greeting is its first line (at most 512 bytes, RFC 5321's reply line), and
        // Exchange writes it as below, letter for letter.
        use memchr::memmem::Finder;
        use std::sync::LazyLock;
        static SMTP: LazyLock<Finder<'static>> =
            LazyLock::new(|| Finder::new(b"Microsoft ESMTP MAIL Service"));
        static IMAP4: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"Microsoft Exchange IMAP4"));
        static POP3: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"Microsoft Exchange POP3"));
        // The line is looked for only once the reply code says greeting: most payloads
        // that get here are other replies ("250 OK") or binary data.
        let contains = |finder: &Finder<'_>| {
            let first = &b[..b.len().min(512)];
            let line = &first[..memchr::memchr(b'\n', first).unwrap_or(first.len())];
            finder.find(line).is_some()
        };
        if b.len() >= 4 && &b[..3] == b"220" && matches!(b[3], b' ' | b'-') {
            if contains(&SMTP) {
                return Exchange::SmtpGreeting;
            }
        } else if b.starts_with(b"* OK ") {
            if contains(&IMAP4) {
                return Exchange::Imap4Greeting;
            }
        } else if b.starts_with(b"+OK ") {
            if contains(&POP3) {
                return Exchange::Pop3Greeting;
            }
        } else if let Some(found) = rpc_bind(b) {
            return found;
        }
        Exchange::Nothing
    }

    /// Whether a server says it (a greeting), rather than a client (a bind).
    pub fn from_server(self) -> bool {
        matches!(self, Exchange::SmtpGreeting | Exchange::Imap4Greeting | Exchange::Pop3Greeting)
    }

    /// Its bit in a set of marks.
    pub fn bit(self) -> u8 {
        match self {
            Exchange::Nothing => 0,
            Exchange::SmtpGreeting => 1,
            Exchange::Imap4Greeting => 2,
            Exchange::Pop3Greeting => 4,
            Exchange::EmsmdbBind => 8,
            Exchange::NspiBind => 16,
        }
    }

    /// What it says, for evidence: "an Exchange SMTP greeting".
    pub fn describe(self) -> &'static str {
        match self {
            Exchange::Nothing => "nothing of Exchange",
            Exchange::SmtpGreeting => "the SMTP greeting \"Microsoft ESMTP MAIL Service\"",
            Exchange::Imap4Greeting => "the Exchange IMAP4 greeting",
            Exchange::Pop3Greeting => "the Exchange POP3 greeting",
            Exchange::EmsmdbBind => "MAPI (EMSMDB) bound over RPC",
            Exchange::NspiBind => "the address book (NSPI) bound over RPC",
        }
    }
}

/// A connection-oriented DCE/RPC bind (11) or alter_context (14) whose presentation
/// context list names EMSMDB or NSPI (C706 chapter 12: the PDU header, then
/// max_xmit_frag, max_recv_frag, assoc_group_id, the context count, and each context:
/// its id, transfer syntax count, the abstract syntax UUID and version, the transfer
/// syntaxes of 20 bytes each).
fn rpc_bind(b: &[u8]) -> Option<Exchange> {
    if b.len() < 28 || b[0] != 5 || b[1] != 0 || !matches!(b[2], 11 | 14) {
        return None;
    }
    let little = b[4] & 0x10 != 0;
    let (emsmdb, nspi) = if little { (EMSMDB_LE, NSPI_LE) } else { (EMSMDB_BE, NSPI_BE) };
    let contexts = usize::from(b[24]);
    let mut at = 28;
    for _ in 0..contexts {
        let uuid = b.get(at + 4..at + 20)?;
        if uuid == emsmdb {
            return Some(Exchange::EmsmdbBind);
        }
        if uuid == nspi {
            return Some(Exchange::NspiBind);
        }
        let transfers = usize::from(*b.get(at + 2)?);
        at += 24 + 20 * transfers;
    }
    None
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

    /// A bind (or alter_context, `kind` 14) of one context per UUID given (as NDR writes
    /// them, little-endian), each with one transfer syntax.
    fn bind(kind: u8, uuids: &[[u8; 16]]) -> Vec<u8> {
        let mut pdu = vec![5, 0, kind, 3, 0x10, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0];
        pdu.extend([0xd0, 0x16, 0xd0, 0x16, 0, 0, 0, 0, uuids.len() as u8, 0, 0, 0]);
        for (i, uuid) in uuids.iter().enumerate() {
            pdu.extend([i as u8, 0, 1, 0]);
            pdu.extend(uuid);
            pdu.extend([1, 0, 0, 0]);
            pdu.extend([
                0x04, 0x5d, 0x88, 0x8a, 0xeb, 0x1c, 0xc9, 0x11, 0x9f, 0xe8, 8, 0, 0x2b, 0x10, 0x48, 0x60,
            ]);
            pdu.extend([2, 0, 0, 0]);
        }
        pdu
    }

    #[test]
    fn what_only_exchange_says_is_read_from_the_whole_payload() {
        let of = |b: &[u8]| Head::of_tcp(b).exchange();
        assert_eq!(
            of(b"220 mail.contoso.com Microsoft ESMTP MAIL Service ready at Fri, 4 Dec 2026 22:10:04 +0000\r\n"),
            Exchange::SmtpGreeting
        );
        assert_eq!(of(b"220-mx.contoso.com Microsoft ESMTP MAIL Service ready\r\n"), Exchange::SmtpGreeting);
        assert_eq!(of(b"* OK The Microsoft Exchange IMAP4 service is ready.\r\n"), Exchange::Imap4Greeting);
        assert_eq!(of(b"+OK The Microsoft Exchange POP3 service is ready.\r\n"), Exchange::Pop3Greeting);
        assert_eq!(of(b"220 mx.example.org ESMTP Postfix\r\n"), Exchange::Nothing);
        assert_eq!(of(b"* OK [CAPABILITY IMAP4rev1] Dovecot ready.\r\n"), Exchange::Nothing);
        assert_eq!(of(b"250 2.0.0 OK Microsoft ESMTP MAIL Service\r\n"), Exchange::Nothing, "not a greeting");
        assert_eq!(of(b"EHLO Microsoft ESMTP MAIL Service\r\n"), Exchange::Nothing);
        // UDP payloads are never looked at.
        assert_eq!(Head::of(b"220 x Microsoft ESMTP MAIL Service").exchange(), Exchange::Nothing);
        assert_eq!(of(&bind(11, &[EMSMDB_LE])), Exchange::EmsmdbBind);
        assert_eq!(of(&bind(11, &[NSPI_LE])), Exchange::NspiBind);
        assert_eq!(of(&bind(14, &[EMSMDB_LE])), Exchange::EmsmdbBind, "alter_context");
        let epm = [0x08, 0x83, 0xaf, 0xe1, 0x1f, 0x5d, 0xc9, 0x11, 0x91, 0xa4, 8, 0, 0x2b, 0x14, 0xa0, 0xfa];
        assert_eq!(of(&bind(11, &[epm])), Exchange::Nothing, "the endpoint mapper");
        assert_eq!(of(&bind(11, &[epm, NSPI_LE])), Exchange::NspiBind, "the second context");
        assert_eq!(of(&bind(0, &[EMSMDB_LE])), Exchange::Nothing, "a request, not a bind");
        let mut big_endian = bind(11, &[EMSMDB_BE]);
        big_endian[4] = 0;
        assert_eq!(of(&big_endian), Exchange::EmsmdbBind);
        assert_eq!(of(&bind(11, &[EMSMDB_BE])), Exchange::Nothing, "big-endian bytes read as little-endian");
        // Cut anywhere, a bind never panics, and names the interface only when whole.
        let whole = bind(11, &[epm, EMSMDB_LE]);
        for n in 0..whole.len() {
            let found = of(&whole[..n]);
            assert!(found == Exchange::Nothing || n >= 28 + 44 + 20, "{n}: {found:?}");
        }
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
