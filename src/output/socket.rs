//! EVE outputs beside files, as Suricata's eve-log `filetype` options: `unix_stream`
//! (lines written to a unix stream socket a shipper listens on) and `syslog` (each line
//! one RFC 5424 message, over a unix datagram socket such as `/dev/log`, UDP, or TCP
//! with RFC 6587 octet counting). A line is never cut: a syslog message carries a whole
//! line or is not sent, and what was not sent is counted as unwritten by the writer.
//!
//! A connection that fails is dropped and made again at the next write, so a shipper
//! that restarts gets the events written after it is back.

use std::io::{self, Write};
use std::net::{TcpStream, UdpSocket};
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::path::{Path, PathBuf};

use super::Sink;

/// Suricata's name for where EVE lines go (`--eve-filetype`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Filetype {
    /// A file, or standard output (`-`).
    Regular,
    /// `--eve-log` is the path of a unix stream socket.
    UnixStream,
    /// `--eve-log` is where a syslog daemon listens.
    Syslog(SyslogTarget),
}

/// Where syslog messages go: `unix:PATH` (a datagram socket: `/dev/log`), `udp:HOST:PORT`
/// or `tcp:HOST:PORT`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SyslogTarget {
    Unix(PathBuf),
    Udp(String),
    Tcp(String),
}

impl Filetype {
    /// The values `--eve-filetype` takes.
    pub const NAMES: &'static str = "regular, unix_stream, syslog";

    /// The filetype `name` with `--eve-log` `log`, or what is wrong with them.
    pub fn parse(name: &str, log: &Path) -> Result<Filetype, String> {
        let log_text = log.to_string_lossy();
        match name {
            "regular" => Ok(Filetype::Regular),
            "unix_stream" if log_text != "-" => Ok(Filetype::UnixStream),
            "unix_stream" => Err("--eve-filetype unix_stream: --eve-log must name the socket's path".into()),
            "syslog" => {
                let target = match log_text.split_once(':') {
                    Some(("unix", path)) if !path.is_empty() => SyslogTarget::Unix(PathBuf::from(path)),
                    Some(("udp", addr)) if addr.contains(':') => SyslogTarget::Udp(addr.to_string()),
                    Some(("tcp", addr)) if addr.contains(':') => SyslogTarget::Tcp(addr.to_string()),
                    _ => {
                        return Err(format!(
                            "--eve-log {log_text}: with --eve-filetype syslog, give unix:PATH, udp:HOST:PORT or tcp:HOST:PORT"
                        ))
                    }
                };
                Ok(Filetype::Syslog(target))
            }
            other => Err(format!("--eve-filetype {other}: not one of {}", Filetype::NAMES)),
        }
    }

    /// The sink of `--eve-log` `log` with this filetype (`append` for a regular file).
    pub fn sink(&self, log: &Path, append: bool) -> Sink {
        match self {
            Filetype::Regular => Sink::at(log, append),
            Filetype::UnixStream => Sink::Socket(Filetype::UnixStream, log.to_path_buf()),
            Filetype::Syslog(_) => Sink::Socket(self.clone(), log.to_path_buf()),
        }
    }
}

/// Syslog's facility and severity for EVE lines: `local5` and `info`, Suricata's defaults.
const PRIORITY: u8 = 21 * 8 + 6;

enum Conn {
    Stream(UnixStream),
    Dgram(UnixDatagram),
    Udp(UdpSocket),
    Tcp(TcpStream),
}

/// An open socket output.
pub struct SocketOut {
    filetype: Filetype,
    path: PathBuf,
    conn: Option<Conn>,
    hostname: String,
    pid: u32,
}

impl std::fmt::Debug for SocketOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SocketOut({:?}, {})", self.filetype, self.path.display())
    }
}

impl SocketOut {
    /// Connects now: a listener that is not there is an error at start, as a file that
    /// cannot be created is.
    pub fn connect(filetype: &Filetype, path: &Path) -> io::Result<SocketOut> {
        let hostname = nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .filter(|h| !h.is_empty() && h.is_ascii())
            .unwrap_or_else(|| "-".into());
        let mut out = SocketOut {
            filetype: filetype.clone(),
            path: path.to_path_buf(),
            conn: None,
            hostname,
            pid: std::process::id(),
        };
        out.conn = Some(out.open()?);
        Ok(out)
    }

    fn open(&self) -> io::Result<Conn> {
        Ok(match &self.filetype {
            Filetype::Regular | Filetype::UnixStream => Conn::Stream(UnixStream::connect(&self.path)?),
            Filetype::Syslog(SyslogTarget::Unix(path)) => {
                let socket = UnixDatagram::unbound()?;
                socket.connect(path)?;
                Conn::Dgram(socket)
            }
            Filetype::Syslog(SyslogTarget::Udp(addr)) => {
                let socket = UdpSocket::bind(if addr.starts_with('[') { "[::]:0" } else { "0.0.0.0:0" })?;
                socket.connect(addr.as_str())?;
                Conn::Udp(socket)
            }
            Filetype::Syslog(SyslogTarget::Tcp(addr)) => Conn::Tcp(TcpStream::connect(addr.as_str())?),
        })
    }

    /// One RFC 5424 message carrying `line` (without its newline).
    fn message(&self, line: &[u8]) -> Vec<u8> {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let stamp = crate::time::timestamp(crate::time::Ts(now.as_nanos() as u64)).replace("+0000", "Z");
        let mut msg =
            format!("<{PRIORITY}>1 {stamp} {} exwatch {} eve - ", self.hostname, self.pid).into_bytes();
        msg.extend_from_slice(line);
        msg
    }

    /// Sends the whole lines at the start of `bytes`; how many bytes they took.
    fn send_lines(&mut self, bytes: &[u8], conn: &mut Conn) -> io::Result<usize> {
        let mut done = 0;
        while let Some(end) = memchr::memchr(b'\n', &bytes[done..]) {
            let message = self.message(&bytes[done..done + end]);
            let sent = match conn {
                Conn::Dgram(s) => s.send(&message).map(|_| ()),
                Conn::Udp(s) => s.send(&message).map(|_| ()),
                Conn::Tcp(s) => {
                    let mut framed = format!("{} ", message.len()).into_bytes();
                    framed.extend_from_slice(&message);
                    s.write_all(&framed)
                }
                Conn::Stream(s) => s.write_all(&message),
            };
            match sent {
                Ok(()) => done += end + 1,
                // Lines sent before the error were written; the error comes next time.
                Err(_) if done > 0 => return Ok(done),
                Err(e) => return Err(e),
            }
        }
        Ok(done)
    }
}

impl Write for SocketOut {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let mut conn = match self.conn.take() {
            Some(conn) => conn,
            None => self.open()?,
        };
        let result = match (&self.filetype, &mut conn) {
            (Filetype::Syslog(_), _) => self.send_lines(bytes, &mut conn),
            (_, Conn::Stream(s)) => s.write(bytes),
            (_, _) => Err(io::Error::other("a unix stream output holds a stream")),
        };
        match result {
            Ok(n) => {
                self.conn = Some(conn);
                Ok(n)
            }
            // The reader went away (a shipper restarting): not a closed standard output,
            // which ends a run quietly, but a log that cannot be written for now. The
            // connection is made again at the next write.
            Err(e) if matches!(e.kind(), io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset) => {
                Err(io::Error::new(io::ErrorKind::NotConnected, e))
            }
            Err(e) => Err(e),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filetypes_and_syslog_addresses_are_checked() {
        let log = |s: &str| PathBuf::from(s);
        assert_eq!(Filetype::parse("regular", &log("-")), Ok(Filetype::Regular));
        assert_eq!(Filetype::parse("unix_stream", &log("/run/eve.sock")), Ok(Filetype::UnixStream));
        assert!(Filetype::parse("unix_stream", &log("-")).is_err());
        assert_eq!(
            Filetype::parse("syslog", &log("udp:127.0.0.1:514")),
            Ok(Filetype::Syslog(SyslogTarget::Udp("127.0.0.1:514".into())))
        );
        assert_eq!(
            Filetype::parse("syslog", &log("unix:/dev/log")),
            Ok(Filetype::Syslog(SyslogTarget::Unix("/dev/log".into())))
        );
        let err = Filetype::parse("syslog", &log("/var/log/eve.json")).expect_err("not an address");
        assert!(err.contains("unix:PATH, udp:HOST:PORT or tcp:HOST:PORT"), "{err}");
        let err = Filetype::parse("redis", &log("-")).expect_err("not a filetype");
        assert!(err.contains("regular, unix_stream, syslog"), "{err}");
    }

    /// A listener that goes away is an error that does not end a run (not a broken
    /// pipe), and the next write reaches the listener that took its place.
    #[test]
    fn a_unix_stream_reconnects_after_its_listener_went_away() {
        use std::io::Read;
        use std::os::unix::net::UnixListener;
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("eve.sock");
        let first = UnixListener::bind(&path).expect("bind");
        let mut out = SocketOut::connect(&Filetype::UnixStream, &path).expect("connect");
        let (accepted, _) = first.accept().expect("accept");
        drop((accepted, first));
        std::fs::remove_file(&path).expect("remove the socket");
        let mut error = None;
        for _ in 0..3 {
            if let Err(e) = out.write(b"{\"a\":1}\n") {
                error = Some(e);
                break;
            }
        }
        let error = error.expect("a write to a closed peer fails");
        assert_ne!(error.kind(), io::ErrorKind::BrokenPipe, "{error}");
        let second = UnixListener::bind(&path).expect("bind again");
        assert_eq!(out.write(b"{\"b\":2}\n").expect("reconnected"), 8);
        drop(out);
        let (mut accepted, _) = second.accept().expect("accept");
        let mut got = String::new();
        accepted.read_to_string(&mut got).expect("read");
        assert_eq!(got, "{\"b\":2}\n");
    }

    /// Over TCP each message is framed by its length (RFC 6587 octet counting) and
    /// carries one whole line after the RFC 5424 header.
    #[test]
    fn tcp_syslog_frames_each_whole_line() {
        use std::io::Read;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let filetype = Filetype::Syslog(SyslogTarget::Tcp(addr));
        let mut out = SocketOut::connect(&filetype, Path::new("-")).expect("connect");
        let (mut server, _) = listener.accept().expect("accept");
        let long = format!("{{\"a\":\"{}\"}}", "x".repeat(3000));
        let written = out.write(format!("{long}\n{{\"b\":1}}\n{{\"c\":").as_bytes()).expect("write");
        assert_eq!(written, long.len() + 1 + 8, "whole lines only");
        drop(out);
        let mut got = Vec::new();
        server.read_to_end(&mut got).expect("read");
        let text = String::from_utf8(got).expect("utf-8");
        let (len, rest) = text.split_once(' ').expect("a length");
        let len: usize = len.parse().expect("a number");
        let first = &rest[..len];
        assert!(
            first.starts_with("<174>1 ") && first.contains(" exwatch ") && first.ends_with(&long),
            "{first}"
        );
        assert!(rest[len..].ends_with("- {\"b\":1}"), "{text}");
    }
}
