//! A minimal D-Bus client: just what berth needs to talk to systemd (method calls with basic,
//! array, struct and variant arguments; replies; signals), over the system bus or systemd's
//! private socket. Little-endian, no fd passing, one call in flight at a time.
//!
//! Own code rather than libcgroups' client: that one is private to its crate, discards the
//! signals berth waits on (JobRemoved) and carries a fixed property set.

use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Instant;

/// Messages larger than this are refused (the spec allows 128 MiB; systemd's replies to berth's
/// calls are tiny).
const MAX_MESSAGE: usize = 16 << 20;

const METHOD_CALL: u8 = 1;
const METHOD_RETURN: u8 = 2;
const ERROR: u8 = 3;
const SIGNAL: u8 = 4;

const F_PATH: u8 = 1;
const F_INTERFACE: u8 = 2;
const F_MEMBER: u8 = 3;
const F_ERROR_NAME: u8 = 4;
const F_REPLY_SERIAL: u8 = 5;
const F_DESTINATION: u8 = 6;
const F_SIGNATURE: u8 = 8;

#[derive(Debug, thiserror::Error)]
pub enum DbusError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("protocol: {0}")]
    Protocol(String),
    /// An error reply: its D-Bus name and message.
    #[error("{name}: {message}")]
    Remote { name: String, message: String },
    #[error("no answer within the time allowed ({0})")]
    Timeout(&'static str),
}

type Result<T> = std::result::Result<T, DbusError>;

fn proto<T>(msg: impl Into<String>) -> Result<T> {
    Err(DbusError::Protocol(msg.into()))
}

/// A D-Bus value. Arrays carry their element signature so an empty one still encodes.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Byte(u8),
    Bool(bool),
    I32(i32),
    U32(u32),
    I64(i64),
    U64(u64),
    Str(String),
    Path(String),
    Sig(String),
    Array(String, Vec<Value>),
    Struct(Vec<Value>),
    Variant(Box<Value>),
}

impl Value {
    pub fn str(s: &str) -> Value {
        Value::Str(s.to_string())
    }

    pub fn signature(&self) -> String {
        match self {
            Value::Byte(_) => "y".into(),
            Value::Bool(_) => "b".into(),
            Value::I32(_) => "i".into(),
            Value::U32(_) => "u".into(),
            Value::I64(_) => "x".into(),
            Value::U64(_) => "t".into(),
            Value::Str(_) => "s".into(),
            Value::Path(_) => "o".into(),
            Value::Sig(_) => "g".into(),
            Value::Array(elem, _) => format!("a{elem}"),
            Value::Struct(fields) => {
                let inner: String = fields.iter().map(Value::signature).collect();
                format!("({inner})")
            }
            Value::Variant(_) => "v".into(),
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) | Value::Path(s) | Value::Sig(s) => Some(s),
            Value::Variant(v) => v.as_str(),
            _ => None,
        }
    }
}

fn align_of(sig: u8) -> usize {
    match sig {
        b'y' | b'g' | b'v' => 1,
        b'x' | b't' | b'd' | b'(' | b'{' => 8,
        _ => 4,
    }
}

fn pad(buf: &mut Vec<u8>, align: usize) {
    while !buf.len().is_multiple_of(align) {
        buf.push(0);
    }
}

/// Encodes `v` at the end of `buf`; offsets are relative to the message start, which `buf`
/// starts at (the body begins 8-aligned, so its alignment is the message's).
fn encode(buf: &mut Vec<u8>, v: &Value) -> Result<()> {
    match v {
        Value::Byte(b) => buf.push(*b),
        Value::Bool(b) => {
            pad(buf, 4);
            buf.extend_from_slice(&u32::from(*b).to_le_bytes());
        }
        Value::I32(n) => {
            pad(buf, 4);
            buf.extend_from_slice(&n.to_le_bytes());
        }
        Value::U32(n) => {
            pad(buf, 4);
            buf.extend_from_slice(&n.to_le_bytes());
        }
        Value::I64(n) => {
            pad(buf, 8);
            buf.extend_from_slice(&n.to_le_bytes());
        }
        Value::U64(n) => {
            pad(buf, 8);
            buf.extend_from_slice(&n.to_le_bytes());
        }
        Value::Str(s) | Value::Path(s) => {
            if s.contains('\0') {
                return proto("a string holds a NUL byte");
            }
            pad(buf, 4);
            let len = u32::try_from(s.len())
                .map_err(|_| DbusError::Protocol("string too long".into()))?;
            buf.extend_from_slice(&len.to_le_bytes());
            buf.extend_from_slice(s.as_bytes());
            buf.push(0);
        }
        Value::Sig(s) => {
            let len = u8::try_from(s.len())
                .map_err(|_| DbusError::Protocol("signature too long".into()))?;
            buf.push(len);
            buf.extend_from_slice(s.as_bytes());
            buf.push(0);
        }
        Value::Array(elem, items) => {
            pad(buf, 4);
            let len_at = buf.len();
            buf.extend_from_slice(&[0; 4]);
            pad(buf, align_of(*elem.as_bytes().first().unwrap_or(&b'y')));
            let start = buf.len();
            for item in items {
                if item.signature() != *elem {
                    return proto(format!("array of {elem} holds a {}", item.signature()));
                }
                encode(buf, item)?;
            }
            let len = u32::try_from(buf.len() - start)
                .map_err(|_| DbusError::Protocol("array too long".into()))?;
            buf[len_at..len_at + 4].copy_from_slice(&len.to_le_bytes());
        }
        Value::Struct(fields) => {
            pad(buf, 8);
            for f in fields {
                encode(buf, f)?;
            }
        }
        Value::Variant(inner) => {
            encode(buf, &Value::Sig(inner.signature()))?;
            encode(buf, inner)?;
        }
    }
    Ok(())
}

/// The end of the single complete type starting at `sig[i]`.
fn type_end(sig: &[u8], i: usize) -> Result<usize> {
    match sig.get(i) {
        None => proto("truncated signature"),
        Some(b'a') => type_end(sig, i + 1),
        Some(&open @ (b'(' | b'{')) => {
            let close = if open == b'(' { b')' } else { b'}' };
            let mut j = i + 1;
            while sig.get(j) != Some(&close) {
                if j >= sig.len() {
                    return proto("unclosed struct in signature");
                }
                j = type_end(sig, j)?;
            }
            Ok(j + 1)
        }
        Some(_) => Ok(i + 1),
    }
}

/// Splits a signature into its complete types.
fn split_signature(sig: &str) -> Result<Vec<&str>> {
    let b = sig.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let end = type_end(b, i)?;
        out.push(&sig[i..end]);
        i = end;
    }
    Ok(out)
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    depth: usize,
}

impl Reader<'_> {
    fn align(&mut self, a: usize) -> Result<()> {
        let next = self.pos.div_ceil(a) * a;
        if next > self.buf.len() {
            return proto("truncated message");
        }
        self.pos = next;
        Ok(())
    }

    fn take(&mut self, n: usize) -> Result<&[u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|e| *e <= self.buf.len())
            .ok_or_else(|| DbusError::Protocol("truncated message".into()))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn fixed<const N: usize>(&mut self) -> Result<[u8; N]> {
        self.align(N)?;
        let mut out = [0; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u32(&mut self) -> Result<u32> {
        self.fixed::<4>().map(u32::from_le_bytes)
    }

    fn string(&mut self, len: usize) -> Result<String> {
        let bytes = self.take(len + 1)?;
        String::from_utf8(bytes[..len].to_vec())
            .map_err(|_| DbusError::Protocol("string is not UTF-8".into()))
    }

    fn value(&mut self, sig: &str) -> Result<Value> {
        // The spec bounds nesting at 64 levels (32 arrays + 32 structs).
        if self.depth > 64 {
            return proto("values nested too deeply");
        }
        let b = sig.as_bytes();
        let Some(&first) = b.first() else {
            return proto("empty signature");
        };
        Ok(match first {
            b'y' => Value::Byte(self.take(1)?[0]),
            b'b' => Value::Bool(self.u32()? != 0),
            b'n' | b'q' => {
                let [l, h] = self.fixed::<2>()?;
                Value::U32(u32::from(u16::from_le_bytes([l, h])))
            }
            b'i' => Value::I32(i32::from_le_bytes(self.fixed::<4>()?)),
            b'u' | b'h' => Value::U32(self.u32()?),
            b'x' => Value::I64(i64::from_le_bytes(self.fixed::<8>()?)),
            b't' | b'd' => Value::U64(u64::from_le_bytes(self.fixed::<8>()?)),
            b's' | b'o' => {
                let len = self.u32()? as usize;
                let s = self.string(len)?;
                if first == b's' {
                    Value::Str(s)
                } else {
                    Value::Path(s)
                }
            }
            b'g' => {
                let len = usize::from(self.take(1)?[0]);
                Value::Sig(self.string(len)?)
            }
            b'v' => {
                let len = usize::from(self.take(1)?[0]);
                let inner = self.string(len)?;
                if split_signature(&inner)?.len() != 1 {
                    return proto("a variant holds other than one type");
                }
                self.depth += 1;
                let v = self.value(&inner)?;
                self.depth -= 1;
                Value::Variant(Box::new(v))
            }
            b'a' => {
                let elem = &sig[1..];
                let len = self.u32()? as usize;
                self.align(align_of(elem.as_bytes().first().copied().unwrap_or(b'y')))?;
                let end = self
                    .pos
                    .checked_add(len)
                    .filter(|e| *e <= self.buf.len())
                    .ok_or_else(|| DbusError::Protocol("array runs past the message".into()))?;
                let mut items = Vec::new();
                self.depth += 1;
                while self.pos < end {
                    items.push(self.value(elem)?);
                }
                self.depth -= 1;
                if self.pos != end {
                    return proto("array length does not match its elements");
                }
                Value::Array(elem.to_string(), items)
            }
            b'(' | b'{' => {
                if sig.len() < 2 {
                    return proto("unclosed struct in signature");
                }
                self.align(8)?;
                let mut fields = Vec::new();
                self.depth += 1;
                for t in split_signature(&sig[1..sig.len() - 1])? {
                    fields.push(self.value(t)?);
                }
                self.depth -= 1;
                Value::Struct(fields)
            }
            other => return proto(format!("unsupported type {:?}", other as char)),
        })
    }
}

/// A received message, with the header fields berth looks at.
#[derive(Debug, Default)]
pub struct Message {
    pub kind: u8,
    pub reply_serial: Option<u32>,
    pub interface: Option<String>,
    pub member: Option<String>,
    pub error_name: Option<String>,
    pub body: Vec<Value>,
}

fn decode_message(buf: &[u8]) -> Result<Message> {
    if buf.first() != Some(&b'l') {
        return proto("not a little-endian message");
    }
    let mut r = Reader {
        buf,
        pos: 12,
        depth: 0,
    };
    let mut msg = Message {
        kind: buf[1],
        ..Message::default()
    };
    let Value::Array(_, fields) = r.value("a(yv)")? else {
        return proto("bad header fields");
    };
    let mut signature = String::new();
    for f in fields {
        let Value::Struct(kv) = f else { continue };
        let (Some(Value::Byte(code)), Some(Value::Variant(v))) = (kv.first(), kv.get(1)) else {
            continue;
        };
        match (*code, v.as_ref()) {
            (F_INTERFACE, Value::Str(s)) => msg.interface = Some(s.clone()),
            (F_MEMBER, Value::Str(s)) => msg.member = Some(s.clone()),
            (F_ERROR_NAME, Value::Str(s)) => msg.error_name = Some(s.clone()),
            (F_REPLY_SERIAL, Value::U32(n)) => msg.reply_serial = Some(*n),
            (F_SIGNATURE, Value::Sig(s)) => signature = s.clone(),
            _ => {}
        }
    }
    r.align(8)?;
    for t in split_signature(&signature)? {
        msg.body.push(r.value(t)?);
    }
    Ok(msg)
}

fn encode_call(
    serial: u32,
    dest: Option<&str>,
    path: &str,
    interface: &str,
    member: &str,
    args: &[Value],
) -> Result<Vec<u8>> {
    let field =
        |code: u8, v: Value| Value::Struct(vec![Value::Byte(code), Value::Variant(Box::new(v))]);
    let mut fields = vec![
        field(F_PATH, Value::Path(path.into())),
        field(F_INTERFACE, Value::str(interface)),
        field(F_MEMBER, Value::str(member)),
    ];
    if let Some(d) = dest {
        fields.push(field(F_DESTINATION, Value::str(d)));
    }
    let signature: String = args.iter().map(Value::signature).collect();
    if !signature.is_empty() {
        fields.push(field(F_SIGNATURE, Value::Sig(signature)));
    }
    let mut body = Vec::new();
    for a in args {
        encode(&mut body, a)?;
    }
    let mut msg = vec![b'l', METHOD_CALL, 0, 1];
    let body_len =
        u32::try_from(body.len()).map_err(|_| DbusError::Protocol("body too long".into()))?;
    msg.extend_from_slice(&body_len.to_le_bytes());
    msg.extend_from_slice(&serial.to_le_bytes());
    encode(&mut msg, &Value::Array("(yv)".into(), fields))?;
    pad(&mut msg, 8);
    msg.extend_from_slice(&body);
    Ok(msg)
}

/// One connection to a bus (or to systemd directly).
pub struct Connection {
    stream: UnixStream,
    serial: u32,
    /// Signals that arrived while a reply was awaited.
    signals: VecDeque<Message>,
}

impl Connection {
    /// Connects and authenticates (SASL EXTERNAL); on a message bus (`hello`) also registers.
    pub fn open(socket: &str, hello: bool, deadline: Instant) -> Result<Connection> {
        let stream = UnixStream::connect(socket)?;
        let mut c = Connection {
            stream,
            serial: 0,
            signals: VecDeque::new(),
        };
        c.set_deadline(deadline)?;
        let uid: String = nix::unistd::geteuid()
            .as_raw()
            .to_string()
            .bytes()
            .map(|b| format!("{b:02x}"))
            .collect();
        c.stream
            .write_all(format!("\0AUTH EXTERNAL {uid}\r\n").as_bytes())
            .map_err(timeout("authentication"))?;
        let line = c.read_line().map_err(timeout("authentication"))?;
        if !line.starts_with("OK ") {
            return proto(format!("authentication refused: {}", line.trim_end()));
        }
        c.stream
            .write_all(b"BEGIN\r\n")
            .map_err(timeout("authentication"))?;
        if hello {
            c.call(
                Some("org.freedesktop.DBus"),
                "/org/freedesktop/DBus",
                "org.freedesktop.DBus",
                "Hello",
                &[],
                deadline,
            )?;
        }
        Ok(c)
    }

    fn set_deadline(&self, deadline: Instant) -> Result<()> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(DbusError::Timeout("deadline passed"));
        }
        self.stream.set_read_timeout(Some(left))?;
        self.stream.set_write_timeout(Some(left))?;
        Ok(())
    }

    fn read_line(&mut self) -> std::io::Result<String> {
        // Byte by byte: nothing may be read past the line, the binary protocol follows it.
        let mut line = Vec::new();
        let mut b = [0u8; 1];
        while !line.ends_with(b"\r\n") {
            if line.len() > 4096 {
                return Err(std::io::Error::new(ErrorKind::InvalidData, "line too long"));
            }
            self.stream.read_exact(&mut b)?;
            line.push(b[0]);
        }
        Ok(String::from_utf8_lossy(&line).into_owned())
    }

    fn read_message(&mut self, deadline: Instant) -> Result<Message> {
        self.set_deadline(deadline)?;
        let mut fixed = [0u8; 16];
        self.stream
            .read_exact(&mut fixed)
            .map_err(timeout("reading a message"))?;
        if fixed[0] != b'l' {
            return proto("big-endian messages are not supported");
        }
        let word = |i: usize| {
            u32::from_le_bytes([fixed[i], fixed[i + 1], fixed[i + 2], fixed[i + 3]]) as usize
        };
        let (body_len, fields_len) = (word(4), word(12));
        let header_len = (16 + fields_len).div_ceil(8) * 8;
        let total = header_len
            .checked_add(body_len)
            .filter(|t| *t <= MAX_MESSAGE)
            .ok_or_else(|| DbusError::Protocol("message too large".into()))?;
        let mut buf = fixed.to_vec();
        buf.resize(total, 0);
        self.stream
            .read_exact(&mut buf[16..])
            .map_err(timeout("reading a message"))?;
        decode_message(&buf)
    }

    /// Calls a method and returns the reply's body; an error reply is `DbusError::Remote`.
    pub fn call(
        &mut self,
        dest: Option<&str>,
        path: &str,
        interface: &str,
        member: &str,
        args: &[Value],
        deadline: Instant,
    ) -> Result<Vec<Value>> {
        self.serial = self.serial.wrapping_add(1).max(1);
        let serial = self.serial;
        let msg = encode_call(serial, dest, path, interface, member, args)?;
        self.set_deadline(deadline)?;
        self.stream
            .write_all(&msg)
            .map_err(timeout("sending a call"))?;
        loop {
            let m = self.read_message(deadline)?;
            match m.kind {
                METHOD_RETURN if m.reply_serial == Some(serial) => return Ok(m.body),
                ERROR if m.reply_serial == Some(serial) => {
                    return Err(DbusError::Remote {
                        name: m.error_name.unwrap_or_default(),
                        message: m
                            .body
                            .first()
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_string(),
                    })
                }
                SIGNAL => self.signals.push_back(m),
                _ => {}
            }
        }
    }

    /// The next signal (one queued during a call first), waiting on the socket until `deadline`.
    pub fn next_signal(&mut self, deadline: Instant) -> Result<Message> {
        if let Some(m) = self.signals.pop_front() {
            return Ok(m);
        }
        loop {
            let m = self.read_message(deadline)?;
            if m.kind == SIGNAL {
                return Ok(m);
            }
        }
    }
}

/// Read and write timeouts (SO_RCVTIMEO/SO_SNDTIMEO, set to the deadline) surface as
/// WouldBlock or TimedOut.
fn timeout(what: &'static str) -> impl Fn(std::io::Error) -> DbusError {
    move |e| match e.kind() {
        ErrorKind::WouldBlock | ErrorKind::TimedOut => DbusError::Timeout(what),
        _ => DbusError::Io(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(v: Value) {
        let mut buf = Vec::new();
        encode(&mut buf, &v).expect("encode");
        let sig = v.signature();
        let mut r = Reader {
            buf: &buf,
            pos: 0,
            depth: 0,
        };
        assert_eq!(r.value(&sig).expect("decode"), v);
        assert_eq!(r.pos, buf.len());
    }

    #[test]
    fn values_roundtrip() {
        roundtrip(Value::U64(u64::MAX));
        roundtrip(Value::Struct(vec![Value::Byte(3), Value::U64(7)]));
        roundtrip(Value::Array(
            "(sv)".into(),
            vec![
                Value::Struct(vec![
                    Value::str("PIDs"),
                    Value::Variant(Box::new(Value::Array("u".into(), vec![Value::U32(42)]))),
                ]),
                Value::Struct(vec![
                    Value::str("MemoryMax"),
                    Value::Variant(Box::new(Value::U64(1 << 30))),
                ]),
                Value::Struct(vec![
                    Value::str("AllowedCPUs"),
                    Value::Variant(Box::new(Value::Array("y".into(), vec![Value::Byte(5)]))),
                ]),
            ],
        ));
        roundtrip(Value::Array("(sa(sv))".into(), vec![]));
    }

    #[test]
    fn call_encodes_and_decodes_as_a_message() {
        let args = [
            Value::str("x.scope"),
            Value::str("replace"),
            Value::Array("(sv)".into(), vec![]),
        ];
        let msg = encode_call(9, Some("org.freedesktop.systemd1"), "/o", "i.f", "M", &args)
            .expect("encode");
        let m = decode_message(&msg).expect("decode");
        assert_eq!(m.kind, METHOD_CALL);
        assert_eq!(m.member.as_deref(), Some("M"));
        assert_eq!(m.body, args);
    }

    #[test]
    fn signatures_split() {
        assert_eq!(
            split_signature("uoss").expect("split"),
            vec!["u", "o", "s", "s"]
        );
        assert_eq!(
            split_signature("a(sv)a{sv}s").expect("split"),
            vec!["a(sv)", "a{sv}", "s"]
        );
        assert!(split_signature("(su").is_err());
    }

    #[test]
    fn hostile_input_is_an_error() {
        let mut buf = vec![b'l', 2, 0, 1];
        buf.extend_from_slice(&0u32.to_le_bytes());
        buf.extend_from_slice(&1u32.to_le_bytes());
        buf.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode_message(&buf).is_err());
    }
}
