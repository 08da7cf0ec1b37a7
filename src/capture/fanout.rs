//! Spreading one interface over several capture sockets: a `PACKET_FANOUT` group whose
//! socket for each frame is chosen by exwatch's own classic-BPF program
//! (`PACKET_FANOUT_CBPF`), so that everything one worker must see together arrives on
//! one socket.
//!
//! **The hash.** [`frame_hash`] is the definition, in plain Rust: the 32-bit symmetric
//! hash of the unordered pair of IP addresses a frame belongs to ([`pair_hash32`]: IPv4
//! `src ^ dst`, IPv6 the eight address words xored together, then the `lowbias32`
//! finalizer [`mix32`]), and the socket is `hash % sockets`. The reader picks a worker by
//! the same hash ([`crate::decode::route_hash`]). [`program`] builds the
//! `struct sock_filter` instructions that compute exactly it in the kernel: 355
//! instructions, of which a frame runs a few dozen (an IPv4 TCP packet 51, an IPv6 one
//! 79; cBPF has no loops, so VLAN tags, GRE options and the IPv6 address words are
//! unrolled, and conditional jumps go through `JA` to stay within their 8-bit reach). The
//! tests run the program through a small cBPF interpreter and hold it to [`frame_hash`]
//! on every frame of every capture in `captures/`, on synthetic frames of every case
//! below, and on arbitrary bytes. Which addresses:
//!
//! - Ethernet as the kernel hands it to a packet socket: the outer 802.1Q / 802.1ad tag
//!   is already stripped into ancillary data (the program reads the ethertype after it
//!   from `skb->protocol`); up to three more tags (802.1Q, 802.1ad, 0x9100) in the bytes
//!   are skipped. Every read is relative to the network header (`SKF_NET_OFF`).
//! - IPv4 and IPv6 headers' own addresses; an IPv4 later fragment has no transport
//!   header, so it is hashed by its addresses like the first: fragments stay together
//!   without the kernel reassembling them (no `PACKET_FANOUT_FLAG_DEFRAG`, which would
//!   hand exwatch the reassembled datagram instead of the fragments it judges, hold
//!   fragments in the kernel, and cover IPv4 only).
//! - ICMP errors (types 3, 4, 5, 11, 12) and ICMPv6 errors (types 1 to 4) right after
//!   the IP header: the addresses of the packet they quote, so an error lands with the
//!   flow it is about.
//! - VXLAN (UDP port 4789 with the I flag), GRE carrying IP or Ethernet, ERSPAN type I,
//!   II and III (with its platform subheader) right after the outer IP header: the
//!   carried frame's addresses (up to three VLAN tags in it), including an ICMP error
//!   inside the tunnel. One level of tunnel only.
//!
//! What falls back, and what that means. An outer IP header that names a tunnel whose
//! payload the program cannot read (GRE version 1, another GRE payload type, a carried
//! frame that is not IP, a tunnel inside the tunnel) hashes by the outer addresses: the
//! whole tunnel between two endpoints goes to one socket, still together, not spread.
//! IPv6 extension headers are not walked, but for a Routing header (types 0, 2 and 4)
//! right after the IPv6 header or after a Hop-by-Hop header: with segments left, the
//! final destination it names is the destination hashed, as the decoder takes it. Other
//! extension headers hash by the IPv6 header's addresses, the flow's pair but for a
//! Routing header deeper in the chain (the two directions of such a flow may then part),
//! an ICMPv6 error or a tunnel behind an extension header. MPLS, PPPoE, non-IP frames and frames cut before
//! a header the program reads all go to socket 0. A tunnel packet's later fragments hash
//! by the outer addresses (they carry no inner header), as the decoder reads them too.
//! Loads relative to the network header reach only the skb's linear part: a driver that
//! leaves a tunnel's inner headers in page fragments sends such frames to socket 0. The
//! frames a host sends itself (not a SPAN port's) may carry no network header offset the
//! program can use, and are hashed as the kernel finds them.
//!
//! **Why not the kernel's `PACKET_FANOUT_HASH`.** The kernel hashes the flow dissector's
//! 4-tuple: a later IPv4 fragment (no ports) lands elsewhere than its first fragment, an
//! ICMP error by its own addresses rather than the flow it quotes, and VXLAN and ERSPAN
//! by the outer header (GRE may or may not be dissected, by kernel version). Each of those
//! splits what one exwatch worker must see together.
//!
//! **Joining.** Every socket of a group runs the same program; the kernel takes the
//! program's result modulo the sockets present (so while fewer than `sockets` are in the
//! group, frames fold onto those that are). A packet socket receives every frame until
//! it joins, and the frames it queued then are also queued on the sockets already in the
//! group: [`LiveCapture::join`] sets a filter that drops everything, drains what was
//! queued (counted, not delivered), joins and sets the program; [`LiveCapture::arm`] then
//! sets the real filter. [`LiveCapture::open_group`] arms the sockets only once all have
//! joined, so no frame is delivered on a socket other than its hash's, and none twice.
//!
//! [`LiveCapture::join`]: crate::capture::LiveCapture::join
//! [`LiveCapture::arm`]: crate::capture::LiveCapture::arm
//! [`LiveCapture::open_group`]: crate::capture::LiveCapture::open_group

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::time::Duration;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use crate::decode::MIX32_MUL;
pub use crate::decode::{mix32, pair_hash32};

/// A fanout group to put a live capture's socket in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FanoutGroup {
    /// The group id (per network namespace): the sockets sharing it share the traffic.
    pub id: u16,
    /// How many sockets the group will hold; the program returns `hash % sockets`.
    pub sockets: u16,
}

/// A classic BPF instruction, laid out as the kernel's `struct sock_filter`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Insn {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

// --- The hash, in Rust: the definition the program is held to --------------------------

/// Ethertypes and protocol numbers the program looks at.
mod wire {
    pub const IPV4: u16 = 0x0800;
    pub const IPV6: u16 = 0x86dd;
    pub const VLAN: u16 = 0x8100;
    pub const QINQ: u16 = 0x88a8;
    pub const QINQ_OLD: u16 = 0x9100;
    pub const TEB: u16 = 0x6558;
    pub const ERSPAN_2: u16 = 0x88be;
    pub const ERSPAN_3: u16 = 0x22eb;
    pub const ICMP: u8 = 1;
    pub const UDP: u8 = 17;
    pub const GRE: u8 = 47;
    pub const ICMPV6: u8 = 58;
    pub const HOP_BY_HOP: u8 = 0;
    pub const ROUTING: u8 = 43;
    pub const VXLAN_PORT: u16 = 4789;
    /// VXLAN's I flag: the VNI is valid.
    pub const VXLAN_I: u8 = 0x08;
    /// GRE flags: checksum, key and sequence number present; the version bits.
    pub const GRE_C: u16 = 0x8000;
    pub const GRE_K: u16 = 0x2000;
    pub const GRE_S: u16 = 0x1000;
    pub const GRE_VERSION: u16 = 0x0007;
    /// The fragment offset bits of an IPv4 header's flags-and-offset field.
    pub const FRAGMENT_OFFSET: u16 = 0x1fff;
    /// VLAN tags in the bytes the program skips (the kernel strips one more).
    pub const TAGS: usize = 3;
    pub const ICMP4_ERRORS: [u8; 5] = [3, 4, 5, 11, 12];
    pub const ICMP6_ERRORS: [u8; 4] = [1, 2, 3, 4];
}

/// The hash the fanout program computes for an Ethernet frame as exwatch reads it (libpcap
/// puts back the VLAN tag the kernel stripped), or `None` when the program returns 0
/// without hashing (not IP, or cut before a header it reads).
pub fn frame_hash(frame: &[u8]) -> Option<u32> {
    let (protocol, net) = kernel_view(frame)?;
    net_hash(protocol, net)
}

/// The socket of `sockets` the program sends `frame` to.
pub fn socket_of(frame: &[u8], sockets: u16) -> usize {
    frame_hash(frame).map_or(0, |hash| (hash % u32::from(sockets.max(1))) as usize)
}

/// What the program sees of a received Ethernet frame: `skb->protocol` and the bytes
/// from the network header on. The kernel takes an outer 802.1Q or 802.1ad tag out of
/// the bytes (into `vlan_tci`) before packet sockets see the frame.
fn kernel_view(frame: &[u8]) -> Option<(u16, &[u8])> {
    let b = Bytes(frame);
    match b.u16(12)? {
        wire::VLAN | wire::QINQ => Some((b.u16(16)?, frame.get(18..)?)),
        ethertype => Some((ethertype, frame.get(14..)?)),
    }
}

/// Big-endian reads that fail past the end, as the program's loads do.
#[derive(Clone, Copy)]
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn u8(self, at: usize) -> Option<u8> {
        self.0.get(at).copied()
    }
    fn u16(self, at: usize) -> Option<u16> {
        Some(u16::from_be_bytes(self.0.get(at..at + 2)?.try_into().ok()?))
    }
    fn u32(self, at: usize) -> Option<u32> {
        Some(u32::from_be_bytes(self.0.get(at..at + 4)?.try_into().ok()?))
    }
}

/// An IP header whose addresses are hashed.
#[derive(Clone, Copy)]
struct Header {
    at: usize,
    v6: bool,
    /// Where an IPv6 destination address is read: the header's own, or the final one a
    /// Routing header names.
    dst: usize,
}

impl Header {
    fn v4(at: usize) -> Header {
        Header { at, v6: false, dst: at + 16 }
    }
    fn v6(at: usize) -> Header {
        Header { at, v6: true, dst: at + 24 }
    }
}

fn net_hash(protocol: u16, net: &[u8]) -> Option<u32> {
    let b = Bytes(net);
    let (ethertype, ip) = skip_tags(b, protocol, 0)?;
    let header = match ethertype {
        wire::IPV4 => outer4(b, ip)?,
        wire::IPV6 => outer6(b, ip)?,
        _ => return None,
    };
    fold(b, header).map(mix32)
}

fn is_tag(ethertype: u16) -> bool {
    matches!(ethertype, wire::VLAN | wire::QINQ | wire::QINQ_OLD)
}

fn skip_tags(b: Bytes, mut ethertype: u16, mut at: usize) -> Option<(u16, usize)> {
    for _ in 0..wire::TAGS {
        if is_tag(ethertype) {
            ethertype = b.u16(at + 2)?;
            at += 4;
        }
    }
    Some((ethertype, at))
}

fn outer4(b: Bytes, ip: usize) -> Option<Header> {
    let me = Header::v4(ip);
    if b.u8(ip)? >> 4 != 4 {
        return None;
    }
    if b.u16(ip + 6)? & wire::FRAGMENT_OFFSET != 0 {
        return Some(me);
    }
    let l4 = ip + usize::from(b.u8(ip)? & 0x0f) * 4;
    match b.u8(ip + 9)? {
        wire::ICMP => icmp(b, l4, &wire::ICMP4_ERRORS, me, me),
        wire::UDP => udp(b, l4, me),
        wire::GRE => gre(b, l4, me),
        _ => Some(me),
    }
}

fn outer6(b: Bytes, ip: usize) -> Option<Header> {
    let me = Header::v6(ip);
    if b.u8(ip)? >> 4 != 6 {
        return None;
    }
    let l4 = ip + 40;
    match b.u8(ip + 6)? {
        wire::ICMPV6 => icmp(b, l4, &wire::ICMP6_ERRORS, me, me),
        wire::UDP => udp(b, l4, me),
        wire::GRE => gre(b, l4, me),
        wire::ROUTING => routed(b, l4, me),
        wire::HOP_BY_HOP if b.u8(l4)? == wire::ROUTING => {
            routed(b, l4 + (usize::from(b.u8(l4 + 1)?) + 1) * 8, me)
        }
        _ => Some(me),
    }
}

/// An IPv6 packet whose Routing header (at `rh`) has segments left: its destination is
/// the final one the header names (types 0 and 2 list it last, type 4 first), as the
/// decoder takes it, so both directions of the flow hash alike.
fn routed(b: Bytes, rh: usize, me: Header) -> Option<Header> {
    if b.u8(rh + 3)? == 0 {
        return Some(me);
    }
    let len = usize::from(b.u8(rh + 1)?) * 8;
    let last = match b.u8(rh + 2)? {
        0 | 2 => true,
        4 => false,
        _ => return Some(me),
    };
    if len < 16 {
        return Some(me);
    }
    let dst = if last { rh + 8 + ((len - 16) & !15) } else { rh + 8 };
    Some(Header { dst, ..me })
}

/// An ICMP message after `current`: an error hashes by the packet it quotes.
fn icmp(b: Bytes, l4: usize, errors: &[u8], current: Header, outer: Header) -> Option<Header> {
    if !errors.contains(&b.u8(l4)?) {
        return Some(current);
    }
    let quote = l4 + 8;
    Some(match b.u8(quote)? >> 4 {
        4 => Header::v4(quote),
        6 => Header::v6(quote),
        _ => outer,
    })
}

fn udp(b: Bytes, l4: usize, outer: Header) -> Option<Header> {
    if b.u16(l4 + 2)? != wire::VXLAN_PORT || b.u8(l4 + 8)? & wire::VXLAN_I == 0 {
        return Some(outer);
    }
    ethernet(b, l4 + 16, outer)
}

fn gre(b: Bytes, at: usize, outer: Header) -> Option<Header> {
    let flags = b.u16(at)?;
    if flags & wire::GRE_VERSION != 0 {
        return Some(outer);
    }
    let optional = [wire::GRE_C, wire::GRE_K, wire::GRE_S].iter().filter(|&&bit| flags & bit != 0).count();
    let body = at + 4 + 4 * optional;
    match b.u16(at + 2)? {
        wire::IPV4 => inner4(b, body, outer),
        wire::IPV6 => inner6(b, body, outer),
        wire::TEB => ethernet(b, body, outer),
        // Type II has a sequence number and an 8-byte header; type I neither.
        wire::ERSPAN_2 => ethernet(b, body + if flags & wire::GRE_S != 0 { 8 } else { 0 }, outer),
        // Type III: 12 bytes, and an 8-byte platform subheader when the O bit is set.
        wire::ERSPAN_3 => ethernet(b, body + 12 + 8 * usize::from(b.u8(body + 11)? & 1), outer),
        _ => Some(outer),
    }
}

fn ethernet(b: Bytes, at: usize, outer: Header) -> Option<Header> {
    let (ethertype, ip) = skip_tags(b, b.u16(at + 12)?, at + 14)?;
    match ethertype {
        wire::IPV4 => inner4(b, ip, outer),
        wire::IPV6 => inner6(b, ip, outer),
        _ => Some(outer),
    }
}

fn inner4(b: Bytes, ip: usize, outer: Header) -> Option<Header> {
    let me = Header::v4(ip);
    if b.u8(ip)? >> 4 != 4 {
        return Some(outer);
    }
    if b.u16(ip + 6)? & wire::FRAGMENT_OFFSET != 0 {
        return Some(me);
    }
    let l4 = ip + usize::from(b.u8(ip)? & 0x0f) * 4;
    match b.u8(ip + 9)? {
        wire::ICMP => icmp(b, l4, &wire::ICMP4_ERRORS, me, outer),
        _ => Some(me),
    }
}

fn inner6(b: Bytes, ip: usize, outer: Header) -> Option<Header> {
    let me = Header::v6(ip);
    if b.u8(ip)? >> 4 != 6 {
        return Some(outer);
    }
    match b.u8(ip + 6)? {
        wire::ICMPV6 => icmp(b, ip + 40, &wire::ICMP6_ERRORS, me, outer),
        _ => Some(me),
    }
}

/// Both addresses of a header folded to 32 bits, before mixing.
fn fold(b: Bytes, header: Header) -> Option<u32> {
    if header.v6 {
        let src = (0..4).try_fold(0, |acc, i| Some(acc ^ b.u32(header.at + 8 + 4 * i)?))?;
        (0..4).try_fold(src, |acc, i| Some(acc ^ b.u32(header.dst + 4 * i)?))
    } else {
        Some(b.u32(header.at + 12)? ^ b.u32(header.at + 16)?)
    }
}

// --- The program ----------------------------------------------------------------------

/// Instruction classes, sizes, modes and operations (linux/bpf_common.h).
mod op {
    pub const LD: u16 = 0x00;
    pub const LDX: u16 = 0x01;
    pub const ST: u16 = 0x02;
    pub const STX: u16 = 0x03;
    pub const ALU: u16 = 0x04;
    pub const JMP: u16 = 0x05;
    pub const RET: u16 = 0x06;
    pub const MISC: u16 = 0x07;
    pub const W: u16 = 0x00;
    pub const H: u16 = 0x08;
    pub const B: u16 = 0x10;
    pub const IMM: u16 = 0x00;
    pub const ABS: u16 = 0x20;
    pub const IND: u16 = 0x40;
    pub const MEM: u16 = 0x60;
    pub const ADD: u16 = 0x00;
    pub const MUL: u16 = 0x20;
    pub const AND: u16 = 0x50;
    pub const LSH: u16 = 0x60;
    pub const RSH: u16 = 0x70;
    pub const MOD: u16 = 0x90;
    pub const XOR: u16 = 0xa0;
    pub const JA: u16 = 0x00;
    pub const JEQ: u16 = 0x10;
    pub const JGE: u16 = 0x30;
    pub const JSET: u16 = 0x40;
    pub const K: u16 = 0x00;
    pub const X: u16 = 0x08;
    /// `RET` of the accumulator.
    pub const A: u16 = 0x10;
    pub const TAX: u16 = 0x00;
    pub const TXA: u16 = 0x80;
    /// Loads relative to the network header, and the ancillary `skb->protocol`
    /// (linux/filter.h).
    pub const NET_OFF: u32 = (-0x10_0000i32) as u32;
    pub const PROTOCOL: u32 = (-0x1000i32) as u32;
}

/// Scratch memory cells of the program.
mod cell {
    /// Cells 0 to 7 hold the IPv6 address words being folded.
    pub const OUTER_IP: u32 = 8;
    pub const OUTER_VERSION: u32 = 9;
    pub const L4: u32 = 10;
    pub const TMP: u32 = 11;
    pub const GRE_FLAGS: u32 = 12;
    pub const GRE_BODY: u32 = 13;
    pub const CURRENT_IP: u32 = 14;
    /// Where the IPv6 destination address being folded starts.
    pub const DST: u32 = 15;
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Label {
    Outer4,
    Outer6,
    Udp,
    Gre,
    GreIp4,
    GreIp6,
    GreEth,
    Erspan2,
    Erspan3,
    Ethernet,
    Inner4,
    Inner6,
    Icmp4,
    Icmp6,
    Quote,
    Fallback,
    Fold4,
    Fold6,
    Fold6At,
    HopByHop,
    Routing,
    Routed,
    RoutedLast,
    RoutedFirst,
    Mix,
}

/// A program being written: instructions, and `JA`s waiting for their label.
#[derive(Default)]
struct Asm {
    code: Vec<Insn>,
    at: Vec<(Label, usize)>,
    jumps: Vec<(usize, Label)>,
}

impl Asm {
    fn put(&mut self, code: u16, k: u32) {
        self.code.push(Insn { code, jt: 0, jf: 0, k });
    }
    fn cond(&mut self, code: u16, k: u32, jt: u8, jf: u8) {
        self.code.push(Insn { code: op::JMP | code | op::K, jt, jf, k });
    }
    fn label(&mut self, label: Label) {
        self.at.push((label, self.code.len()));
    }
    fn ja(&mut self, label: Label) {
        self.jumps.push((self.code.len(), label));
        self.put(op::JMP | op::JA, 0);
    }
    /// `A = P[X + at]` from the network header on.
    fn load(&mut self, size: u16, at: u32) {
        self.put(op::LD | size | op::IND, op::NET_OFF.wrapping_add(at));
    }
    fn alu(&mut self, operation: u16, k: u32) {
        self.put(op::ALU | operation | op::K, k);
    }
    fn st(&mut self, cell: u32) {
        self.put(op::ST, cell);
    }
    fn stx(&mut self, cell: u32) {
        self.put(op::STX, cell);
    }
    fn ld_mem(&mut self, cell: u32) {
        self.put(op::LD | op::MEM, cell);
    }
    fn ldx_mem(&mut self, cell: u32) {
        self.put(op::LDX | op::MEM, cell);
    }
    fn tax(&mut self) {
        self.put(op::MISC | op::TAX, 0);
    }
    fn txa(&mut self) {
        self.put(op::MISC | op::TXA, 0);
    }
    /// Goes to `label` when `A == k`.
    fn jeq_to(&mut self, k: u32, label: Label) {
        self.cond(op::JEQ, k, 0, 1);
        self.ja(label);
    }
    /// Goes to `label` when `A != k`.
    fn jne_to(&mut self, k: u32, label: Label) {
        self.cond(op::JEQ, k, 1, 0);
        self.ja(label);
    }
    /// Goes to `label` when `A & k != 0`.
    fn jset_to(&mut self, k: u32, label: Label) {
        self.cond(op::JSET, k, 0, 1);
        self.ja(label);
    }
    /// Returns 0 (socket 0, nothing hashed) when `A != k`.
    fn ret0_unless(&mut self, k: u32) {
        self.cond(op::JEQ, k, 1, 0);
        self.put(op::RET | op::K, 0);
    }
    /// `A = the IP version` of the header at X.
    fn version(&mut self) {
        self.load(op::B, 0);
        self.alu(op::RSH, 4);
    }
    /// With the ethertype in A and its end in X, skips up to [`wire::TAGS`] VLAN tags.
    fn skip_tags(&mut self) {
        for _ in 0..wire::TAGS {
            self.cond(op::JEQ, u32::from(wire::VLAN), 2, 0);
            self.cond(op::JEQ, u32::from(wire::QINQ), 1, 0);
            self.cond(op::JEQ, u32::from(wire::QINQ_OLD), 0, 6);
            self.load(op::H, 2);
            self.st(cell::TMP);
            self.txa();
            self.alu(op::ADD, 4);
            self.tax();
            self.ld_mem(cell::TMP);
        }
    }
    /// `A = X + 4 * IHL` of the IPv4 header at X, stored as the transport header's start.
    fn l4_after_ipv4(&mut self) {
        self.load(op::B, 0);
        self.alu(op::AND, 0x0f);
        self.alu(op::LSH, 2);
        self.put(op::ALU | op::ADD | op::X, 0);
        self.st(cell::L4);
    }
    /// Every `JA` pointed at its label: the offsets are only known once all is written.
    fn finish(mut self) -> Vec<Insn> {
        for (from, label) in std::mem::take(&mut self.jumps) {
            if let Some(&(_, to)) = self.at.iter().find(|(l, _)| *l == label) {
                self.code[from].k = (to - from - 1) as u32;
            }
        }
        self.code
    }
}

/// The fanout program for a group of `sockets`: [`frame_hash`] `% sockets`, or 0 when
/// there is nothing to hash. The same instructions for every group size but the last
/// `MOD`; every jump is forward, every scratch cell stored before it is read.
pub fn program(sockets: u16) -> Vec<Insn> {
    let mut a = Asm::default();
    // skb->protocol: the ethertype after the tag the kernel stripped.
    a.put(op::LD | op::H | op::ABS, op::PROTOCOL);
    a.put(op::LDX | op::IMM, 0);
    a.skip_tags();
    a.jeq_to(u32::from(wire::IPV4), Label::Outer4);
    a.jeq_to(u32::from(wire::IPV6), Label::Outer6);
    a.put(op::RET | op::K, 0);

    a.label(Label::Outer4);
    a.stx(cell::OUTER_IP);
    a.stx(cell::CURRENT_IP);
    a.put(op::LD | op::IMM, 4);
    a.st(cell::OUTER_VERSION);
    a.version();
    a.ret0_unless(4);
    a.load(op::H, 6);
    a.jset_to(u32::from(wire::FRAGMENT_OFFSET), Label::Fold4);
    a.l4_after_ipv4();
    a.load(op::B, 9);
    a.jeq_to(u32::from(wire::ICMP), Label::Icmp4);
    a.jeq_to(u32::from(wire::UDP), Label::Udp);
    a.jeq_to(u32::from(wire::GRE), Label::Gre);
    a.ja(Label::Fold4);

    a.label(Label::Outer6);
    a.stx(cell::OUTER_IP);
    a.stx(cell::CURRENT_IP);
    a.put(op::LD | op::IMM, 6);
    a.st(cell::OUTER_VERSION);
    a.version();
    a.ret0_unless(6);
    a.txa();
    a.alu(op::ADD, 40);
    a.st(cell::L4);
    a.load(op::B, 6);
    a.jeq_to(u32::from(wire::ICMPV6), Label::Icmp6);
    a.jeq_to(u32::from(wire::UDP), Label::Udp);
    a.jeq_to(u32::from(wire::GRE), Label::Gre);
    a.jeq_to(u32::from(wire::ROUTING), Label::Routing);
    a.jeq_to(u32::from(wire::HOP_BY_HOP), Label::HopByHop);
    a.ja(Label::Fold6);

    // X is the IPv6 header. A Routing header right after it, or after a Hop-by-Hop one.
    a.label(Label::HopByHop);
    a.load(op::B, 40);
    a.jne_to(u32::from(wire::ROUTING), Label::Fold6);
    a.load(op::B, 41);
    a.alu(op::ADD, 1);
    a.alu(op::LSH, 3);
    a.alu(op::ADD, 40);
    a.put(op::ALU | op::ADD | op::X, 0);
    a.tax();
    a.ja(Label::Routed);
    a.label(Label::Routing);
    a.txa();
    a.alu(op::ADD, 40);
    a.tax();
    // X is the Routing header; the outer IPv6 header is cell OUTER_IP.
    a.label(Label::Routed);
    a.load(op::B, 3);
    a.jeq_to(0, Label::Fallback);
    a.load(op::B, 1);
    a.alu(op::LSH, 3);
    a.st(cell::TMP);
    a.load(op::B, 2);
    a.jeq_to(0, Label::RoutedLast);
    a.jeq_to(2, Label::RoutedLast);
    a.jeq_to(4, Label::RoutedFirst);
    a.ja(Label::Fallback);
    a.label(Label::RoutedLast);
    a.ld_mem(cell::TMP);
    a.cond(op::JGE, 16, 1, 0);
    a.ja(Label::Fallback);
    // The last address: 8 + ((len - 16) & !15) into the header.
    a.alu(op::ADD, 16u32.wrapping_neg());
    a.alu(op::AND, !15);
    a.alu(op::ADD, 8);
    a.put(op::ALU | op::ADD | op::X, 0);
    a.st(cell::DST);
    a.ldx_mem(cell::OUTER_IP);
    a.ja(Label::Fold6At);
    a.label(Label::RoutedFirst);
    a.ld_mem(cell::TMP);
    a.cond(op::JGE, 16, 1, 0);
    a.ja(Label::Fallback);
    a.txa();
    a.alu(op::ADD, 8);
    a.st(cell::DST);
    a.ldx_mem(cell::OUTER_IP);
    a.ja(Label::Fold6At);

    a.label(Label::Udp);
    a.ldx_mem(cell::L4);
    a.load(op::H, 2);
    a.jne_to(u32::from(wire::VXLAN_PORT), Label::Fallback);
    a.load(op::B, 8);
    a.cond(op::JSET, u32::from(wire::VXLAN_I), 1, 0);
    a.ja(Label::Fallback);
    a.txa();
    a.alu(op::ADD, 16);
    a.tax();
    a.ja(Label::Ethernet);

    a.label(Label::Gre);
    a.ldx_mem(cell::L4);
    a.load(op::H, 0);
    a.st(cell::GRE_FLAGS);
    a.jset_to(u32::from(wire::GRE_VERSION), Label::Fallback);
    a.txa();
    a.alu(op::ADD, 4);
    a.st(cell::GRE_BODY);
    for bit in [wire::GRE_C, wire::GRE_K, wire::GRE_S] {
        a.ld_mem(cell::GRE_FLAGS);
        a.cond(op::JSET, u32::from(bit), 0, 3);
        a.ld_mem(cell::GRE_BODY);
        a.alu(op::ADD, 4);
        a.st(cell::GRE_BODY);
    }
    a.load(op::H, 2);
    a.jeq_to(u32::from(wire::IPV4), Label::GreIp4);
    a.jeq_to(u32::from(wire::IPV6), Label::GreIp6);
    a.jeq_to(u32::from(wire::TEB), Label::GreEth);
    a.jeq_to(u32::from(wire::ERSPAN_2), Label::Erspan2);
    a.jeq_to(u32::from(wire::ERSPAN_3), Label::Erspan3);
    a.ja(Label::Fallback);
    a.label(Label::GreIp4);
    a.ldx_mem(cell::GRE_BODY);
    a.ja(Label::Inner4);
    a.label(Label::GreIp6);
    a.ldx_mem(cell::GRE_BODY);
    a.ja(Label::Inner6);
    a.label(Label::GreEth);
    a.ldx_mem(cell::GRE_BODY);
    a.ja(Label::Ethernet);
    a.label(Label::Erspan2);
    a.ld_mem(cell::GRE_FLAGS);
    a.alu(op::AND, u32::from(wire::GRE_S));
    // 0x1000 >> 9 is 8: the type II header's length when the sequence number is there.
    a.alu(op::RSH, 9);
    a.ldx_mem(cell::GRE_BODY);
    a.put(op::ALU | op::ADD | op::X, 0);
    a.tax();
    a.ja(Label::Ethernet);
    a.label(Label::Erspan3);
    a.ldx_mem(cell::GRE_BODY);
    a.load(op::B, 11);
    a.alu(op::AND, 1);
    a.alu(op::LSH, 3);
    a.alu(op::ADD, 12);
    a.put(op::ALU | op::ADD | op::X, 0);
    a.tax();
    a.ja(Label::Ethernet);

    a.label(Label::Ethernet);
    a.load(op::H, 12);
    a.st(cell::TMP);
    a.txa();
    a.alu(op::ADD, 14);
    a.tax();
    a.ld_mem(cell::TMP);
    a.skip_tags();
    a.jeq_to(u32::from(wire::IPV4), Label::Inner4);
    a.jeq_to(u32::from(wire::IPV6), Label::Inner6);
    a.ja(Label::Fallback);

    a.label(Label::Inner4);
    a.version();
    a.jne_to(4, Label::Fallback);
    a.stx(cell::CURRENT_IP);
    a.load(op::H, 6);
    a.jset_to(u32::from(wire::FRAGMENT_OFFSET), Label::Fold4);
    a.l4_after_ipv4();
    a.load(op::B, 9);
    a.jeq_to(u32::from(wire::ICMP), Label::Icmp4);
    a.ja(Label::Fold4);

    a.label(Label::Inner6);
    a.version();
    a.jne_to(6, Label::Fallback);
    a.stx(cell::CURRENT_IP);
    a.txa();
    a.alu(op::ADD, 40);
    a.st(cell::L4);
    a.load(op::B, 6);
    a.jeq_to(u32::from(wire::ICMPV6), Label::Icmp6);
    a.ja(Label::Fold6);

    a.label(Label::Icmp4);
    a.ldx_mem(cell::L4);
    a.load(op::B, 0);
    for kind in wire::ICMP4_ERRORS {
        a.jeq_to(u32::from(kind), Label::Quote);
    }
    a.ldx_mem(cell::CURRENT_IP);
    a.ja(Label::Fold4);

    a.label(Label::Icmp6);
    a.ldx_mem(cell::L4);
    a.load(op::B, 0);
    for kind in wire::ICMP6_ERRORS {
        a.jeq_to(u32::from(kind), Label::Quote);
    }
    a.ldx_mem(cell::CURRENT_IP);
    a.ja(Label::Fold6);

    // X is the ICMP header; the quoted packet starts 8 bytes on.
    a.label(Label::Quote);
    a.txa();
    a.alu(op::ADD, 8);
    a.tax();
    a.version();
    a.jeq_to(4, Label::Fold4);
    a.jeq_to(6, Label::Fold6);
    a.ja(Label::Fallback);

    a.label(Label::Fallback);
    a.ldx_mem(cell::OUTER_IP);
    a.ld_mem(cell::OUTER_VERSION);
    a.jeq_to(4, Label::Fold4);
    a.ja(Label::Fold6);

    a.label(Label::Fold4);
    a.load(op::W, 12);
    a.st(cell::TMP);
    a.load(op::W, 16);
    a.ldx_mem(cell::TMP);
    a.put(op::ALU | op::XOR | op::X, 0);
    a.ja(Label::Mix);

    a.label(Label::Fold6);
    a.txa();
    a.alu(op::ADD, 24);
    a.st(cell::DST);
    // X is the IPv6 header, cell DST where its destination address is read.
    a.label(Label::Fold6At);
    for word in 0..4 {
        a.load(op::W, 8 + 4 * word);
        a.st(word);
    }
    a.ldx_mem(cell::DST);
    for word in 4..8 {
        a.load(op::W, 4 * (word - 4));
        a.st(word);
    }
    a.ld_mem(0);
    for word in 1..8 {
        a.ldx_mem(word);
        a.put(op::ALU | op::XOR | op::X, 0);
    }

    a.label(Label::Mix);
    for (shift, multiplier) in [(16, Some(MIX32_MUL[0])), (15, Some(MIX32_MUL[1])), (16, None)] {
        a.tax();
        a.alu(op::RSH, shift);
        a.put(op::ALU | op::XOR | op::X, 0);
        if let Some(m) = multiplier {
            a.alu(op::MUL, m);
        }
    }
    a.alu(op::MOD, u32::from(sockets.max(1)));
    a.put(op::RET | op::A, 0);
    a.finish()
}

// --- Joining --------------------------------------------------------------------------

/// `PACKET_FANOUT` and its modes (linux/if_packet.h).
const PACKET_FANOUT: libc::c_int = 18;
const PACKET_FANOUT_DATA: libc::c_int = 22;
const PACKET_FANOUT_CBPF: libc::c_int = 6;

/// Joins the socket `fd` to `group`, with [`program`] choosing each frame's socket.
#[allow(unsafe_code)]
fn set_fanout(fd: BorrowedFd<'_>, group: FanoutGroup) -> io::Result<()> {
    let mut filter: Vec<libc::sock_filter> = program(group.sockets)
        .into_iter()
        .map(|i| libc::sock_filter { code: i.code, jt: i.jt, jf: i.jf, k: i.k })
        .collect();
    let len = u16::try_from(filter.len()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let fprog = libc::sock_fprog { len, filter: filter.as_mut_ptr() };
    let mode: libc::c_int = libc::c_int::from(group.id) | (PACKET_FANOUT_CBPF << 16);
    let set = |name: libc::c_int, value: *const libc::c_void, size: usize| {
        // SAFETY: `fd` is an open socket borrowed for the call; `value` points to a live
        // `c_int` or `sock_fprog` of `size` bytes, whose `filter` points to `len`
        // instructions in `filter`, alive until this function returns. The kernel only
        // reads them (and copies the program).
        let rc = unsafe {
            libc::setsockopt(fd.as_raw_fd(), libc::SOL_PACKET, name, value, size as libc::socklen_t)
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    };
    set(PACKET_FANOUT, std::ptr::from_ref(&mode).cast(), size_of::<libc::c_int>())?;
    set(PACKET_FANOUT_DATA, std::ptr::from_ref(&fprog).cast(), size_of::<libc::sock_fprog>())
}

/// Why a socket could not join, in one line a caller can print before falling back to
/// one socket.
fn join_error(err: &io::Error, group: FanoutGroup) -> String {
    let why = match err.raw_os_error() {
        Some(libc::ENOPROTOOPT) => "this kernel has no packet fanout".to_string(),
        Some(libc::EINVAL) => format!(
            "the kernel refused a classic-BPF fanout (PACKET_FANOUT_CBPF needs Linux 4.5), or group {} \
             is in use with another mode or on another interface",
            group.id
        ),
        Some(libc::EALREADY) => "the socket is already in a fanout group".to_string(),
        Some(libc::ENOSPC) => format!("fanout group {} is full", group.id),
        Some(libc::EPERM) => "the socket's filter is locked".to_string(),
        _ => err.to_string(),
    };
    format!("cannot spread the capture over {} sockets (fanout group {}): {why}", group.sockets, group.id)
}

/// A filter that passes no frame: frames with at most one byte do not exist.
const DROP_ALL: &str = "less 1";

/// Puts an open capture in `group`: drop everything, drain what the socket queued before
/// (those frames are queued on the group's other sockets too), join. The capture passes
/// nothing until [`arm`]ed.
pub(super) fn join(
    capture: &mut pcap::Capture<pcap::Active>,
    group: FanoutGroup,
    block_timeout_ms: u16,
) -> Result<(), String> {
    use std::os::fd::AsFd;
    capture
        .filter(DROP_ALL, true)
        .map_err(|e| format!("cannot set the filter that holds frames back: {e}"))?;
    drain(capture, block_timeout_ms)?;
    set_fanout(capture.as_fd(), group).map_err(|e| join_error(&e, group))
}

/// Reads and discards every frame the socket holds (libpcap may discard some itself: it
/// runs a new filter over the blocks already in the ring). The kernel hands over a partly
/// filled block once it is `block_timeout_ms` old, so the socket is empty once it stays
/// quiet for twice that (no new frame passes the drop-all filter).
fn drain(capture: &mut pcap::Capture<pcap::Active>, block_timeout_ms: u16) -> Result<(), String> {
    use std::os::fd::AsFd;
    let quiet = PollTimeout::try_from(Duration::from_millis(2 * u64::from(block_timeout_ms.max(1))))
        .unwrap_or(PollTimeout::MAX);
    let failed = |e: &dyn std::fmt::Display| format!("cannot drain the socket before joining: {e}");
    loop {
        match capture.next_packet() {
            Ok(_) => {}
            Err(pcap::Error::TimeoutExpired) => {
                let ready = {
                    let mut fds = [PollFd::new(capture.as_fd(), PollFlags::POLLIN)];
                    poll(&mut fds, quiet)
                };
                match ready {
                    Ok(0) => return Ok(()),
                    Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                    Err(e) => return Err(failed(&e)),
                }
            }
            Err(e) => return Err(failed(&e)),
        }
    }
}

/// Lets frames through: the user's filter, or all of them.
pub(super) fn arm(capture: &mut pcap::Capture<pcap::Active>, bpf: Option<&str>) -> Result<(), pcap::Error> {
    capture.filter(bpf.unwrap_or(""), true)
}

#[cfg(test)]
/// The fanout program held to [`frame_hash`] through a small cBPF interpreter, and
/// [`frame_hash`] held to the decoder's choice of addresses.
mod tests {
    use std::net::{IpAddr, SocketAddr};
    use std::path::{Path, PathBuf};

    use super::*;
    use crate::capture::{FrameSource, Next, Savefile};
    use crate::decode::{decode, route_hash, LinkType, Transport};
    use crate::testkit::synth::wire::{self as synth, IpFragment, Link, Segment};
    use crate::time::Ts;

    /// What the kernel's classic-BPF checker (`bpf_check_classic`) asks of a program, as far
    /// as this program could fail it: a length, forward jumps inside the program, a return
    /// last, scratch cells in range and stored on every path before they are read, no
    /// `MOD` by zero.
    fn kernel_accepts(program: &[Insn]) -> Result<(), String> {
        if program.is_empty() || program.len() > 4096 {
            return Err(format!("{} instructions", program.len()));
        }
        if program.last().map(|i| i.code & 0x07) != Some(op::RET) {
            return Err("the last instruction is not a return".into());
        }
        let mut masks = vec![u16::MAX; program.len()];
        let mut valid: u16 = 0;
        for (pc, insn) in program.iter().enumerate() {
            valid &= masks[pc];
            let class = insn.code & 0x07;
            let mode = insn.code & 0xe0;
            let target = |offset: u32| {
                let to = pc + 1 + offset as usize;
                if to < program.len() {
                    Ok(to)
                } else {
                    Err(format!("jump out of the program at {pc}"))
                }
            };
            match class {
                op::ST | op::STX if insn.k < 16 => valid |= 1 << insn.k,
                op::LD | op::LDX if mode == op::MEM && (insn.k >= 16 || valid & (1 << insn.k) == 0) => {
                    return Err(format!("cell {} read before it is stored, at {pc}", insn.k));
                }
                op::ALU if insn.code & 0xf0 == op::MOD && insn.code & op::X == 0 && insn.k == 0 => {
                    return Err(format!("MOD by zero at {pc}"));
                }
                op::JMP if insn.code & 0xf0 == op::JA => {
                    masks[target(insn.k)?] &= valid;
                    valid = u16::MAX;
                }
                op::JMP => {
                    masks[target(u32::from(insn.jt))?] &= valid;
                    masks[target(u32::from(insn.jf))?] &= valid;
                    valid = u16::MAX;
                }
                op::ST | op::STX => return Err(format!("cell {} out of range at {pc}", insn.k)),
                _ => {}
            }
        }
        Ok(())
    }

    /// Runs a classic BPF program as the fanout hook does: loads relative to the network
    /// header (`SKF_NET_OFF`) read `net`, the ancillary protocol load reads `protocol`, and
    /// a load past the end returns 0, as in the kernel.
    fn run(program: &[Insn], protocol: u16, net: &[u8]) -> Result<u32, String> {
        execute(program, protocol, net).map(|(result, _)| result)
    }

    /// [`run`], and how many instructions ran.
    fn execute(program: &[Insn], protocol: u16, net: &[u8]) -> Result<(u32, usize), String> {
        let (mut a, mut x, mut mem, mut pc) = (0u32, 0u32, [0u32; 16], 0usize);
        let mut steps = 0;
        loop {
            let insn = *program.get(pc).ok_or_else(|| format!("ran off the end at {pc}"))?;
            steps += 1;
            if steps > program.len() {
                return Err("a jump went backwards".into());
            }
            pc += 1;
            let class = insn.code & 0x07;
            let src = if insn.code & op::X != 0 { x } else { insn.k };
            match class {
                op::LD | op::LDX => {
                    let size = match insn.code & 0x18 {
                        op::W => 4,
                        op::H => 2,
                        op::B => 1,
                        _ => return Err(format!("size of {:#x}", insn.code)),
                    };
                    let value = match insn.code & 0xe0 {
                        op::IMM => insn.k,
                        op::MEM => mem[insn.k as usize],
                        op::ABS if insn.k == op::PROTOCOL && size == 2 => u32::from(protocol),
                        mode @ (op::ABS | op::IND) => {
                            let offset = if mode == op::IND { x.wrapping_add(insn.k) } else { insn.k };
                            let Some(at) = offset.checked_sub(op::NET_OFF).filter(|&at| at < 0x10_0000)
                            else {
                                return Err(format!(
                                    "a load not relative to the network header at {}",
                                    pc - 1
                                ));
                            };
                            let at = at as usize;
                            match net.get(at..at + size) {
                                Some(bytes) => bytes.iter().fold(0, |v, &b| (v << 8) | u32::from(b)),
                                None => return Ok((0, steps)),
                            }
                        }
                        _ => return Err(format!("mode of {:#x}", insn.code)),
                    };
                    if class == op::LD {
                        a = value;
                    } else {
                        x = value;
                    }
                }
                op::ST => mem[insn.k as usize] = a,
                op::STX => mem[insn.k as usize] = x,
                op::ALU => {
                    a = match insn.code & 0xf0 {
                        op::ADD => a.wrapping_add(src),
                        op::MUL => a.wrapping_mul(src),
                        op::AND => a & src,
                        op::LSH => a.wrapping_shl(src),
                        op::RSH => a.wrapping_shr(src),
                        op::XOR => a ^ src,
                        op::MOD => a.checked_rem(src).ok_or("MOD by zero")?,
                        other => return Err(format!("ALU operation {other:#x}")),
                    }
                }
                op::JMP => {
                    let offset = match insn.code & 0xf0 {
                        op::JA => insn.k as usize,
                        op::JEQ if a == src => usize::from(insn.jt),
                        op::JSET if a & src != 0 => usize::from(insn.jt),
                        op::JGE if a >= src => usize::from(insn.jt),
                        op::JEQ | op::JSET | op::JGE => usize::from(insn.jf),
                        other => return Err(format!("jump {other:#x}")),
                    };
                    pc += offset;
                }
                op::RET => return Ok((if insn.code & 0x18 == op::A { a } else { insn.k }, steps)),
                op::MISC if insn.code & 0xf8 == op::TXA => a = x,
                op::MISC => x = a,
                _ => return Err(format!("class of {:#x}", insn.code)),
            }
        }
    }

    /// The socket the program picks for a received frame, as the kernel would run it.
    fn program_socket(program: &[Insn], frame: &[u8]) -> Option<usize> {
        let (protocol, net) = kernel_view(frame)?;
        Some(run(program, protocol, net).unwrap_or_else(|e| panic!("{e} on {frame:02x?}")) as usize)
    }

    fn programs() -> Vec<(u16, Vec<Insn>)> {
        (1..=8).map(|n| (n, program(n))).collect()
    }

    fn assert_program_agrees(programs: &[(u16, Vec<Insn>)], frame: &[u8], what: &str) {
        for (n, program) in programs {
            if let Some(socket) = program_socket(program, frame) {
                assert_eq!(socket, socket_of(frame, *n), "{what}, {n} sockets: {frame:02x?}");
            }
        }
    }

    fn captures() -> Vec<PathBuf> {
        let mut files = Vec::new();
        let mut dirs = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("captures")];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).unwrap().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    dirs.push(path);
                } else if matches!(path.extension().and_then(|e| e.to_str()), Some("pcap" | "pcapng")) {
                    files.push(path);
                }
            }
        }
        files.sort();
        files
    }

    /// Every frame of a capture, with its link type, up to the damage that ends a file.
    fn frames_of(path: &Path) -> Vec<(LinkType, Vec<u8>)> {
        let Ok(mut file) = Savefile::open(path) else { return Vec::new() };
        let mut frames = Vec::new();
        while let Ok(Next::Frame(frame)) = file.next_frame() {
            frames.push((frame.link, frame.data.to_vec()));
        }
        frames
    }

    /// A kernel or socket that cannot join says why in one line the caller can print.
    #[test]
    fn join_errors_say_why_in_one_line() {
        let group = FanoutGroup { id: 3, sockets: 4 };
        for (errno, why) in [
            (libc::ENOPROTOOPT, "this kernel has no packet fanout"),
            (libc::EINVAL, "PACKET_FANOUT_CBPF needs Linux 4.5"),
            (libc::EALREADY, "already in a fanout group"),
            (libc::ENOSPC, "fanout group 3 is full"),
        ] {
            let line = join_error(&io::Error::from_raw_os_error(errno), group);
            assert!(
                line.starts_with("cannot spread the capture over 4 sockets (fanout group 3): "),
                "{line}"
            );
            assert!(line.contains(why) && !line.contains('\n'), "{line}");
        }
    }

    #[test]
    fn the_kernel_would_accept_the_program_for_every_group_size() {
        for n in [1, 2, 3, 7, 8, 64, u16::MAX] {
            let program = program(n);
            assert_eq!(kernel_accepts(&program), Ok(()), "{n} sockets");
            assert_eq!(program.last(), Some(&Insn { code: op::RET | op::A, jt: 0, jf: 0, k: 0 }));
        }
        // The module doc gives the counts: the program's, and what the common packets run.
        assert_eq!(program(2).len(), 355);
        for (frame, steps) in [
            (packet("10.1.0.5:49152", "10.2.0.9:25", [None, None]), 51),
            (packet("[2001:db8::5]:49152", "[2001:db8:1::9]:443", [None, None]), 79),
        ] {
            let (protocol, net) = kernel_view(&frame).unwrap();
            assert_eq!(execute(&program(2), protocol, net).map(|(_, n)| n), Ok(steps));
        }
    }

    /// The checker above is itself checked: it refuses what the kernel refuses.
    #[test]
    fn the_checker_refuses_a_cell_read_before_it_is_stored() {
        let read_first = [
            Insn { code: op::LD | op::MEM, jt: 0, jf: 0, k: 3 },
            Insn { code: op::RET | op::A, jt: 0, jf: 0, k: 0 },
        ];
        assert!(kernel_accepts(&read_first).is_err());
        let one_path = [
            Insn { code: op::JMP | op::JEQ, jt: 0, jf: 1, k: 0 },
            Insn { code: op::ST, jt: 0, jf: 0, k: 3 },
            Insn { code: op::LD | op::MEM, jt: 0, jf: 0, k: 3 },
            Insn { code: op::RET | op::A, jt: 0, jf: 0, k: 0 },
        ];
        assert!(kernel_accepts(&one_path).is_err());
    }

    #[test]
    fn the_program_computes_the_hash_on_every_frame_of_every_capture() {
        let programs = programs();
        let mut frames = 0;
        for path in captures() {
            for (_, frame) in frames_of(&path) {
                assert_program_agrees(&programs, &frame, &path.display().to_string());
                frames += 1;
            }
        }
        assert!(frames > 5000, "{frames} frames read");
    }

    /// The addresses the decoder routes a frame by: the flow's, or the quoted flow's for an
    /// ICMP error, the inner flow's for a tunnel.
    fn decoder_pair(frame: &[u8]) -> Option<(IpAddr, IpAddr)> {
        let packet = decode(LinkType::Ethernet, Ts(0), 0, frame).ok()?;
        let tuple = match packet.transport {
            Transport::IcmpError { quoted, .. } => quoted,
            _ => packet.tuple,
        };
        Some((tuple.src, tuple.dst))
    }

    /// On the Ethernet captures, the program hashes the pair the decoder routes by, except
    /// on the fallbacks the module doc names (pinned here per capture).
    #[test]
    fn the_hash_is_the_decoders_address_pair_but_for_the_named_fallbacks() {
        let mut differ: Vec<(String, usize)> = Vec::new();
        let mut agree = 0;
        for path in captures() {
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            let mut count = 0;
            for (link, frame) in frames_of(&path) {
                if link != LinkType::Ethernet {
                    continue;
                }
                let Some((src, dst)) = decoder_pair(&frame) else { continue };
                if frame_hash(&frame) == Some(pair_hash32(src, dst)) {
                    // The reader's worker choice is made by the same 32-bit hash.
                    assert_eq!(route_hash(link, &frame) >> 32, u64::from(pair_hash32(src, dst)), "{name}");
                    agree += 1;
                } else {
                    count += 1;
                }
            }
            if count > 0 {
                differ.push((name, count));
            }
        }
        // PPPoE and MPLS go to socket 0.
        let expected: Vec<(String, usize)> =
            [("pppoe-session-http.pcap", 30), ("vlan-mpls-http-telnet.pcap", 11)]
                .map(|(name, count)| (name.to_string(), count))
                .to_vec();
        assert_eq!(differ, expected, "({agree} frames agree)");
    }

    fn sa(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    fn tcp(payload: &[u8]) -> Segment<'_> {
        Segment::Tcp { flags: 0x18, seq: 1, ack: 1, payload }
    }

    /// An Ethernet frame of one packet from `src` to `dst`, with `vlans` tags.
    fn packet(src: &str, dst: &str, vlans: [Option<u16>; 2]) -> Vec<u8> {
        synth::ethernet(Link { vlans }, &synth::ip_packet(sa(src), sa(dst), 64, tcp(b"hello")))
    }

    fn pair(src: &str, dst: &str) -> u32 {
        pair_hash32(sa(src).ip(), sa(dst).ip())
    }

    /// An ICMP error from `router` to the sender of `quoted` (an IP packet).
    fn icmp_error(router: &str, quoted: &[u8], v6: bool) -> Vec<u8> {
        let sender = if v6 { &quoted[8..24] } else { &quoted[12..16] };
        let to = if v6 {
            IpAddr::from(<[u8; 16]>::try_from(sender).unwrap())
        } else {
            IpAddr::from(<[u8; 4]>::try_from(sender).unwrap())
        };
        let kind = if v6 { 1 } else { 3 };
        let segment =
            Segment::Icmp { kind, code: if v6 { 1 } else { 13 }, body: &quoted[..quoted.len().min(48)] };
        synth::ethernet(Link::default(), &synth::ip_packet(sa(router), SocketAddr::new(to, 0), 64, segment))
    }

    /// The Ethernet frame of an outer IPv4 packet of protocol `proto` carrying `payload`.
    fn outer(proto: u8, payload: &[u8]) -> Vec<u8> {
        let ip = synth::ip_with_payload(
            sa("192.0.2.1:0").ip(),
            sa("192.0.2.2:0").ip(),
            64,
            proto,
            payload,
            IpFragment::None,
        );
        synth::ethernet(Link::default(), &ip)
    }

    fn gre(flags: u16, protocol: u16, extra: &[u8], payload: &[u8]) -> Vec<u8> {
        [&flags.to_be_bytes()[..], &protocol.to_be_bytes(), extra, payload].concat()
    }

    fn vxlan(flags: u8, payload: &[u8]) -> Vec<u8> {
        let mut udp = vec![0xc3, 0x50, 0x12, 0xb5, 0, 0, 0, 0, flags, 0, 0, 0, 0, 0, 0x2a, 0];
        udp.extend_from_slice(payload);
        udp
    }

    /// Frames of every case the program reads, each with the address pair it must hash.
    fn cases() -> Vec<(&'static str, Vec<u8>, Option<u32>)> {
        let v4 = ("10.1.0.5:49152", "10.2.0.9:25");
        let v6 = ("[2001:db8::5]:49152", "[2001:db8:1::9]:443");
        let inner = packet(v4.0, v4.1, [None, None]);
        let inner_ip = inner[14..].to_vec();
        let flow4 = Some(pair(v4.0, v4.1));
        let flow6 = Some(pair(v6.0, v6.1));
        let tunnel_ends = Some(pair("192.0.2.1:0", "192.0.2.2:0"));
        let payload = synth::transport(sa(v4.0), sa(v4.1), Segment::Udp { payload: &[7; 64] });
        let fragment = |offset: u16, more: bool, bytes: &[u8]| {
            let frag = IpFragment::V4 { id: 0x4242, offset, more };
            synth::ethernet(
                Link::default(),
                &synth::ip_with_payload(sa(v4.0).ip(), sa(v4.1).ip(), 64, 17, bytes, frag),
            )
        };
        let quoted6 = synth::ip_packet(sa(v6.0), sa(v6.1), 64, tcp(b"q"));
        let erspan3 = [&[0x20u8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01][..], &[0; 8], &inner].concat();
        let erspan3_plain = [&[0x20u8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0][..], &inner].concat();
        let tagged_inner = packet(v4.0, v4.1, [Some(7), Some(8)]);
        // IPv6 to a next hop, with a Routing header naming the server as final destination.
        let hop = sa("[2001:db8:77::1]:0");
        let octets = |text: &str| match sa(text).ip() {
            IpAddr::V6(v6) => v6.octets(),
            IpAddr::V4(_) => unreachable!(),
        };
        let routed = |kind: u8, left: u8, addresses: &[&str], hop_by_hop: bool| {
            let segment = synth::transport(sa(v6.0), sa(v6.1), tcp(b"routed"));
            let mut rh = vec![6, (addresses.len() * 2) as u8, kind, left, 0, 0, 0, 0];
            for a in addresses {
                rh.extend_from_slice(&octets(a));
            }
            rh.extend_from_slice(&segment);
            let (next, payload) =
                if hop_by_hop { (0, [&[43u8, 0, 1, 4, 0, 0, 0, 0][..], &rh].concat()) } else { (43, rh) };
            let ip = synth::ip_with_payload(sa(v6.0).ip(), hop.ip(), 64, next, &payload, IpFragment::None);
            synth::ethernet(Link::default(), &ip)
        };
        let via = "[2001:db8:77::2]:0";
        vec![
            ("IPv4", packet(v4.0, v4.1, [None, None]), flow4),
            ("IPv4 the other way", packet(v4.1, v4.0, [None, None]), flow4),
            ("IPv6", packet(v6.0, v6.1, [None, None]), flow6),
            ("IPv6 the other way", packet(v6.1, v6.0, [None, None]), flow6),
            ("802.1Q", packet(v4.0, v4.1, [Some(10), None]), flow4),
            ("QinQ", packet(v4.1, v4.0, [Some(10), Some(20)]), flow4),
            ("QinQ IPv6", packet(v6.0, v6.1, [Some(10), Some(20)]), flow6),
            ("first fragment", fragment(0, true, &payload[..24]), flow4),
            ("later fragment", fragment(24, true, &payload[24..48]), flow4),
            ("last fragment", fragment(48, false, &payload[48..]), flow4),
            ("ICMP error", icmp_error("10.9.9.9:0", &inner_ip, false), flow4),
            ("ICMPv6 error", icmp_error("[2001:db8:ff::1]:0", &quoted6, true), flow6),
            ("VXLAN", outer(17, &vxlan(0x08, &inner)), flow4),
            ("VXLAN, inner QinQ", outer(17, &vxlan(0x08, &tagged_inner)), flow4),
            ("VXLAN without the I flag", outer(17, &vxlan(0, &inner)), tunnel_ends),
            ("GRE IPv4", outer(47, &gre(0, 0x0800, &[], &inner_ip)), flow4),
            ("GRE with key", outer(47, &gre(0x2000, 0x6558, &[0, 0, 0, 7], &inner)), flow4),
            ("GRE with all options", outer(47, &gre(0xb000, 0x6558, &[0; 12], &inner)), flow4),
            ("GRE version 1", outer(47, &gre(0x0001, 0x880b, &[], &inner)), tunnel_ends),
            ("ERSPAN I", outer(47, &gre(0, 0x88be, &[], &inner)), flow4),
            (
                "ERSPAN II",
                outer(47, &gre(0x1000, 0x88be, &[0, 0, 0, 1, 0x10, 0, 0, 1, 0, 0, 0, 0], &inner)),
                flow4,
            ),
            ("ERSPAN III", outer(47, &gre(0, 0x22eb, &[], &erspan3)), flow4),
            ("ERSPAN III, no subheader", outer(47, &gre(0, 0x22eb, &[], &erspan3_plain)), flow4),
            (
                "ICMP error in VXLAN",
                outer(17, &vxlan(0x08, &icmp_error("10.9.9.9:0", &inner_ip, false))),
                flow4,
            ),
            ("Routing type 0", routed(0, 2, &[via, v6.1], false), flow6),
            ("Routing type 2", routed(2, 1, &[v6.1], false), flow6),
            ("Routing type 4", routed(4, 1, &[v6.1, via], false), flow6),
            ("Hop-by-Hop, Routing", routed(0, 1, &[via, v6.1], true), flow6),
            (
                "Routing, no segments left",
                routed(0, 0, &[via, v6.1], false),
                Some(pair(v6.0, "[2001:db8:77::1]:0")),
            ),
            ("Routing type 3", routed(3, 1, &[v6.1], false), Some(pair(v6.0, "[2001:db8:77::1]:0"))),
            ("ARP", [&inner[..12], &[0x08, 0x06], &[0; 28]].concat(), None),
            ("cut IPv4", inner[..30].to_vec(), None),
        ]
    }

    #[test]
    fn every_case_hashes_its_flow_and_the_program_agrees() {
        let programs = programs();
        for (what, frame, expected) in cases() {
            assert_eq!(frame_hash(&frame), expected, "{what}");
            assert_program_agrees(&programs, &frame, what);
            // The decoder routes the frames that decode by the same pair.
            if let (Some(expected), Some((src, dst))) = (expected, decoder_pair(&frame)) {
                assert_eq!(pair_hash32(src, dst), expected, "{what}: the decoder's pair");
            }
        }
    }

    /// Many flows, both ways: each flow's two directions on one socket, and the flows
    /// spread over every socket.
    #[test]
    fn both_directions_share_a_socket_and_flows_spread() {
        let programs = programs();
        for (n, program) in &programs {
            let mut used = vec![0; usize::from(*n)];
            for i in 0..200u32 {
                let a = format!("10.{}.{}.{}:{}", i % 7, i / 7, i % 250 + 1, 40000 + i);
                let b = format!("[2001:db8::{:x}]:443", i * 31 + 1);
                let b4 = format!("172.16.{}.{}:25", i % 13, i % 200 + 1);
                for (x, y) in [(&a, &b4), (&b, &format!("[2001:db8:5::{i:x}]:1"))] {
                    let there = program_socket(program, &packet(x, y, [None, None]));
                    let back = program_socket(program, &packet(y, x, [Some(3), None]));
                    assert_eq!(there, back, "{x} {y}, {n} sockets");
                    used[there.unwrap()] += 1;
                }
            }
            assert!(used.iter().all(|&count| count > 400 / usize::from(*n) / 2), "{n} sockets: {used:?}");
        }
    }

    proptest::proptest! {
        /// On any bytes after a header that leads into each part of the program, the program
        /// gives what the Rust hash gives.
        #[test]
        fn the_program_agrees_on_arbitrary_bytes(
            case in 0usize..32,
            cut in 0usize..200,
            at in 0usize..200,
            value: u8,
            tail in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64),
        ) {
            let (_, mut frame, _) = cases().swap_remove(case);
            if let Some(byte) = frame.get_mut(at) {
                *byte = value;
            }
            frame.truncate(cut.max(14));
            frame.extend_from_slice(&tail);
            for n in [1u16, 2, 3, 8] {
                let program = program(n);
                if let Some(socket) = program_socket(&program, &frame) {
                    proptest::prop_assert_eq!(socket, socket_of(&frame, n));
                }
            }
        }
    }
}
