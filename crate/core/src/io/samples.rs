//! Per-sample length files streamed into arrays: the reference JSON list, JSON Lines and CSV.
//!
//! Only regular files are read: the file is opened with `O_NONBLOCK` (a FIFO cannot block the
//! open) and checked with `fstat` on the open descriptor, so a symbolic link is followed and
//! its target checked. Limits hold while streaming: the total bytes of all files, the number of
//! samples, and the bytes of one record (a line, a CSV record, one element of a list). A UTF-8
//! byte-order mark at the start of a file is skipped; line ends may be LF or CRLF.
//!
//! Every error names the file and line (and for a JSON list the element, counted from 0) and
//! says what was wrong, never quoting the file's content. `src/io/samples.ts` is the TypeScript
//! twin and words every message alike.

use super::record::{csv_fields, csv_trim, csv_value, is_json_space, json_sample, RecordError};
use crate::error::Error;
use std::fs::{File, OpenOptions};
use std::io::{self, Read};

/// A length-file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The reference format: a JSON list of sample objects.
    Json,
    /// JSON Lines: one sample object per line.
    Jsonl,
    /// CSV with a header naming the vision and text columns.
    Csv,
}

impl Format {
    /// Parses `json`, `jsonl` or `csv`.
    pub fn parse(name: &str) -> Result<Self, Error> {
        match name {
            "json" => Ok(Format::Json),
            "jsonl" => Ok(Format::Jsonl),
            "csv" => Ok(Format::Csv),
            _ => Err(Error::UnknownOption {
                name: "format".into(),
                value: name.into(),
                known: &["json", "jsonl", "csv"],
            }),
        }
    }
}

/// Limits that hold while reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadLimits {
    /// Most bytes over all files together.
    pub max_bytes: u64,
    /// Most samples over all files together.
    pub max_samples: u64,
    /// Most bytes of one record: a line, a CSV record, or one element of a JSON list.
    pub max_record_bytes: usize,
}

impl Default for ReadLimits {
    fn default() -> Self {
        ReadLimits {
            max_bytes: DEFAULT_MAX_BYTES,
            max_samples: DEFAULT_MAX_SAMPLES,
            max_record_bytes: DEFAULT_MAX_RECORD_BYTES,
        }
    }
}

/// Default total byte limit: 64 GiB.
pub const DEFAULT_MAX_BYTES: u64 = 64 << 30;
/// Default sample limit: 2^31 - 1.
pub const DEFAULT_MAX_SAMPLES: u64 = (1 << 31) - 1;
/// Default record limit: 1 MiB.
pub const DEFAULT_MAX_RECORD_BYTES: usize = 1 << 20;
/// The largest record limit a caller may set: 256 MiB, well under V8's string limit.
pub const MAX_RECORD_BYTES_LIMIT: usize = 256 << 20;

/// Samples read from files: arrays, and how many came from each file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadedSamples {
    pub vision: Vec<u32>,
    pub text: Vec<u32>,
    /// Samples per file, in order.
    pub counts: Vec<u64>,
}

/// The name Node gives an I/O error (`ENOENT`), for messages both backends word alike.
fn errno_name(e: &io::Error) -> String {
    let named = [
        (libc::ENOENT, "ENOENT"),
        (libc::EACCES, "EACCES"),
        (libc::EPERM, "EPERM"),
        (libc::EISDIR, "EISDIR"),
        (libc::ENOTDIR, "ENOTDIR"),
        (libc::ELOOP, "ELOOP"),
        (libc::ENAMETOOLONG, "ENAMETOOLONG"),
        (libc::EIO, "EIO"),
        (libc::EMFILE, "EMFILE"),
        (libc::ENXIO, "ENXIO"),
        (libc::EAGAIN, "EAGAIN"),
    ];
    match e.raw_os_error() {
        Some(n) => named
            .iter()
            .find(|(c, _)| *c == n)
            .map_or_else(|| format!("errno {n}"), |(_, s)| (*s).to_owned()),
        None => format!("{:?}", e.kind()),
    }
}

fn parse_error(message: String) -> Error {
    Error::Parse { message }
}

/// Opens `path` for reading without blocking and checks it is a regular file.
fn open_regular(path: &str) -> Result<(File, u64), Error> {
    let mut options = OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NONBLOCK);
    }
    let file = options
        .open(path)
        .map_err(|e| parse_error(format!("{path}: cannot read ({})", errno_name(&e))))?;
    let meta = file
        .metadata()
        .map_err(|e| parse_error(format!("{path}: cannot read ({})", errno_name(&e))))?;
    if !meta.is_file() {
        return Err(parse_error(format!("{path}: not a regular file")));
    }
    Ok((file, meta.len()))
}

/// Where the samples of all files go, with the limits.
struct Sink<'a> {
    out: &'a mut LoadedSamples,
    limits: ReadLimits,
    path: &'a str,
}

impl Sink<'_> {
    fn where_(&self, line: u64, element: Option<u64>) -> String {
        match element {
            Some(k) => format!("{}:{line}: element {k}", self.path),
            None => format!("{}:{line}", self.path),
        }
    }

    fn fail(&self, line: u64, element: Option<u64>, e: RecordError) -> Error {
        match e {
            RecordError::Syntax(m) => parse_error(format!("{}: {m}", self.where_(line, element))),
            RecordError::Value(m) => Error::InvalidRecord {
                message: format!("{}: {m}", self.where_(line, element)),
            },
        }
    }

    fn too_long(&self, line: u64, element: Option<u64>) -> Error {
        parse_error(format!(
            "{}: the record is longer than {} bytes (maxRecordBytes)",
            self.where_(line, element),
            self.limits.max_record_bytes
        ))
    }

    fn push(&mut self, line: u64, element: Option<u64>, v: u32, t: u32) -> Result<(), Error> {
        if self.out.text.len() as u64 >= self.limits.max_samples {
            return Err(parse_error(format!(
                "{}: more than {} samples (maxSamples)",
                self.where_(line, element),
                self.limits.max_samples
            )));
        }
        self.out.vision.push(v);
        self.out.text.push(t);
        Ok(())
    }
}

/// A format's incremental scanner: `scan` takes every complete record of `buf[*start..]`,
/// advancing `*start` past it; `finish` handles what is left at the end of the file.
trait Scanner {
    /// The buffer lost its first `by` bytes.
    fn shift(&mut self, by: usize);
    fn scan(&mut self, buf: &[u8], start: &mut usize, sink: &mut Sink) -> Result<(), Error>;
    fn finish(&mut self, buf: &[u8], start: usize, sink: &mut Sink) -> Result<(), Error>;
}

/// JSON Lines: one object per line; lines of JSON whitespace only are skipped.
#[derive(Default)]
struct JsonLines {
    line: u64,
    /// How far the current partial line has been searched for its end.
    scanned: usize,
}

impl JsonLines {
    fn record(&mut self, rec: &[u8], sink: &mut Sink) -> Result<(), Error> {
        self.line += 1;
        if rec.len() > sink.limits.max_record_bytes {
            return Err(sink.too_long(self.line, None));
        }
        if rec.iter().all(|&b| is_json_space(b)) {
            return Ok(());
        }
        let (v, t) = json_sample(rec).map_err(|e| sink.fail(self.line, None, e))?;
        sink.push(self.line, None, v, t)
    }
}

impl Scanner for JsonLines {
    fn shift(&mut self, by: usize) {
        self.scanned = self.scanned.saturating_sub(by);
    }

    fn scan(&mut self, buf: &[u8], start: &mut usize, sink: &mut Sink) -> Result<(), Error> {
        let mut from = (*start).max(self.scanned);
        while let Some(p) = memchr::memchr(b'\n', &buf[from..]) {
            let end = from + p;
            self.record(&buf[*start..end], sink)?;
            *start = end + 1;
            from = *start;
        }
        self.scanned = buf.len();
        if buf.len() - *start > sink.limits.max_record_bytes {
            return Err(sink.too_long(self.line + 1, None));
        }
        Ok(())
    }

    fn finish(&mut self, buf: &[u8], start: usize, sink: &mut Sink) -> Result<(), Error> {
        if start < buf.len() {
            self.record(&buf[start..], sink)?;
        }
        Ok(())
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum ListState {
    /// Before the opening `[`.
    Start,
    /// After `[`: an element or `]`.
    First,
    /// After `,`: an element.
    Next,
    /// After an element: `,` or `]`.
    After,
    /// Inside an element (an object), scanning for its end.
    Element,
    /// After the closing `]`.
    End,
}

/// The reference JSON list, element by element: each element must be an object, and is
/// parsed on its own once its closing brace is found.
struct JsonList {
    state: ListState,
    line: u64,
    element: u64,
    /// Position up to which the buffer has been scanned.
    pos: usize,
    depth: u32,
    in_string: bool,
    escaped: bool,
    element_line: u64,
}

impl Default for JsonList {
    fn default() -> Self {
        JsonList {
            state: ListState::Start,
            line: 1,
            element: 0,
            pos: 0,
            depth: 0,
            in_string: false,
            escaped: false,
            element_line: 1,
        }
    }
}

impl Scanner for JsonList {
    fn shift(&mut self, by: usize) {
        self.pos = self.pos.saturating_sub(by);
    }

    fn scan(&mut self, buf: &[u8], start: &mut usize, sink: &mut Sink) -> Result<(), Error> {
        let mut i = self.pos.max(*start);
        while i < buf.len() {
            let c = buf[i];
            if self.state == ListState::Element {
                if c == b'\n' {
                    self.line += 1;
                }
                if self.in_string {
                    if self.escaped {
                        self.escaped = false;
                    } else if c == b'\\' {
                        self.escaped = true;
                    } else if c == b'"' {
                        self.in_string = false;
                    }
                } else if c == b'"' {
                    self.in_string = true;
                } else if c == b'{' || c == b'[' {
                    self.depth += 1;
                } else if c == b'}' || c == b']' {
                    self.depth -= 1;
                    if self.depth == 0 {
                        let rec = &buf[*start..=i];
                        let k = Some(self.element);
                        if rec.len() > sink.limits.max_record_bytes {
                            return Err(sink.too_long(self.element_line, k));
                        }
                        let (v, t) =
                            json_sample(rec).map_err(|e| sink.fail(self.element_line, k, e))?;
                        sink.push(self.element_line, k, v, t)?;
                        self.element += 1;
                        self.state = ListState::After;
                        *start = i + 1;
                    }
                }
                i += 1;
                if self.state == ListState::Element && i - *start > sink.limits.max_record_bytes {
                    return Err(sink.too_long(self.element_line, Some(self.element)));
                }
                continue;
            }
            *start = i + 1;
            if c == b'\n' {
                self.line += 1;
                i += 1;
                continue;
            }
            if is_json_space(c) {
                i += 1;
                continue;
            }
            let here = sink.where_(self.line, None);
            match self.state {
                ListState::Start => {
                    if c != b'[' {
                        return Err(parse_error(format!(
                            "{here}: expected a JSON list starting with '['"
                        )));
                    }
                    self.state = ListState::First;
                }
                ListState::First | ListState::Next => {
                    if c == b'{' {
                        self.state = ListState::Element;
                        self.depth = 1;
                        self.element_line = self.line;
                        *start = i;
                    } else if c == b']' && self.state == ListState::First {
                        self.state = ListState::End;
                    } else {
                        return Err(parse_error(format!(
                            "{}: expected a JSON object",
                            sink.where_(self.line, Some(self.element))
                        )));
                    }
                }
                ListState::After => match c {
                    b',' => self.state = ListState::Next,
                    b']' => self.state = ListState::End,
                    _ => {
                        return Err(parse_error(format!(
                            "{here}: expected ',' or ']' after element {}",
                            self.element - 1
                        )))
                    }
                },
                ListState::End => {
                    return Err(parse_error(format!(
                        "{here}: unexpected content after the end of the list"
                    )))
                }
                ListState::Element => unreachable!("handled above"),
            }
            i += 1;
        }
        self.pos = i;
        Ok(())
    }

    fn finish(&mut self, _buf: &[u8], _start: usize, sink: &mut Sink) -> Result<(), Error> {
        let here = sink.where_(self.line, None);
        match self.state {
            ListState::End => Ok(()),
            ListState::Start => Err(parse_error(format!(
                "{here}: expected a JSON list starting with '['"
            ))),
            ListState::Element => Err(parse_error(format!(
                "{}: the file ends inside the element",
                sink.where_(self.element_line, Some(self.element))
            ))),
            _ => Err(parse_error(format!(
                "{here}: the file ends before the list's closing ']'"
            ))),
        }
    }
}

/// Where a CSV scan is within a field, to tell a line end inside quotes from a record's end.
/// A quote only opens a quoted field at the field's start; stray quotes are left to
/// [`csv_fields`] to report.
#[derive(Default, Clone, Copy, PartialEq, Eq)]
enum CsvField {
    #[default]
    Start,
    Unquoted,
    Quoted,
    /// A quote inside a quoted field: its end, or the first of a doubled quote.
    QuoteInQuoted,
}

/// The error for a CR outside quotes that no LF follows: lines ending in CR alone (classic Mac OS)
/// would otherwise read as one long record with a misleading message.
const BARE_CR: &str = "a line ends in a bare CR (classic Mac OS line ends) or a CR stands alone outside quotes; use LF or CRLF line ends";

/// CSV (RFC 4180): a header naming the columns, then one sample per record; empty records are
/// skipped; every record has as many fields as the header. Line ends are LF or CRLF.
#[derive(Default)]
struct Csv {
    /// Line of the next record's start.
    line: u64,
    /// Lines inside the partial record so far, and where in a field the scan is, at `pos`.
    record_lines: u64,
    field: CsvField,
    pos: usize,
    columns: Option<(usize, usize, usize, &'static str, &'static str)>,
    fields: Vec<(usize, usize)>,
}

impl Csv {
    fn record(&mut self, rec: &[u8], sink: &mut Sink) -> Result<(), Error> {
        let line = self.line;
        self.line += self.record_lines + 1;
        self.record_lines = 0;
        if rec.len() > sink.limits.max_record_bytes {
            return Err(sink.too_long(line, None));
        }
        let rec = rec.strip_suffix(b"\r").unwrap_or(rec);
        if rec.is_empty() {
            return Ok(());
        }
        csv_fields(rec, &mut self.fields).map_err(|e| sink.fail(line, None, e))?;
        let Some((count, vc, tc, vn, tn)) = self.columns else {
            let name = |f: &(usize, usize)| csv_trim(&rec[f.0..f.1]).to_ascii_lowercase();
            let find = |keys: [&'static str; 2]| {
                self.fields.iter().enumerate().find_map(|(c, f)| {
                    let n = name(f);
                    keys.iter()
                        .find(|k| k.as_bytes() == n.as_slice())
                        .map(|k| (c, *k))
                })
            };
            let (Some((vc, vn)), Some((tc, tn))) =
                (find(["vit_num", "vision"]), find(["token_num", "text"]))
            else {
                return Err(parse_error(format!(
                    "{}: the header must name a vision column (vit_num or vision) and a text column (token_num or text)",
                    sink.where_(line, None)
                )));
            };
            self.columns = Some((self.fields.len(), vc, tc, vn, tn));
            return Ok(());
        };
        if self.fields.len() != count {
            return Err(parse_error(format!(
                "{}: has {} fields, the header has {count}",
                sink.where_(line, None),
                self.fields.len()
            )));
        }
        let field = |c: usize| &rec[self.fields[c].0..self.fields[c].1];
        let v = csv_value(vn, vc, field(vc), 0).map_err(|e| sink.fail(line, None, e))?;
        let t = csv_value(tn, tc, field(tc), 1).map_err(|e| sink.fail(line, None, e))?;
        sink.push(line, None, v, t)
    }
}

impl Scanner for Csv {
    fn shift(&mut self, by: usize) {
        self.pos = self.pos.saturating_sub(by);
    }

    fn scan(&mut self, buf: &[u8], start: &mut usize, sink: &mut Sink) -> Result<(), Error> {
        if self.line == 0 {
            self.line = 1;
        }
        let mut i = self.pos.max(*start);
        while i < buf.len() {
            let c = buf[i];
            self.field = match (self.field, c) {
                (CsvField::Quoted, b'"') => CsvField::QuoteInQuoted,
                (CsvField::Quoted, b'\n') => {
                    self.record_lines += 1;
                    CsvField::Quoted
                }
                (CsvField::Quoted, _) => CsvField::Quoted,
                (CsvField::QuoteInQuoted, b'"') => CsvField::Quoted,
                (CsvField::Start, b'"') => CsvField::Quoted,
                (_, b',') => CsvField::Start,
                (_, b'\n') => {
                    self.record(&buf[*start..i], sink)?;
                    *start = i + 1;
                    CsvField::Start
                }
                // Outside quotes a CR must start a CRLF: resume here once the next byte has arrived.
                (_, b'\r') => match buf.get(i + 1) {
                    None => break,
                    Some(b'\n') => CsvField::Unquoted,
                    Some(_) => {
                        return Err(parse_error(format!(
                            "{}: {BARE_CR}",
                            sink.where_(self.line + self.record_lines, None)
                        )))
                    }
                },
                _ => CsvField::Unquoted,
            };
            i += 1;
        }
        self.pos = i;
        if buf.len() - *start > sink.limits.max_record_bytes {
            return Err(sink.too_long(self.line, None));
        }
        Ok(())
    }

    fn finish(&mut self, buf: &[u8], start: usize, sink: &mut Sink) -> Result<(), Error> {
        if self.line == 0 {
            self.line = 1;
        }
        if start < buf.len() {
            if buf.len() - start > sink.limits.max_record_bytes {
                return Err(sink.too_long(self.line, None));
            }
            if self.field == CsvField::Quoted {
                return Err(parse_error(format!(
                    "{}: a quoted field is not closed",
                    sink.where_(self.line, None)
                )));
            }
            self.record(&buf[start..], sink)?;
        }
        if self.columns.is_none() {
            return Err(parse_error(format!("{}: no header row", sink.path)));
        }
        Ok(())
    }
}

/// Bytes read per call.
const CHUNK: usize = 1 << 20;

fn too_big(path: &str, limits: ReadLimits) -> Error {
    parse_error(format!(
        "{path}: the input is larger than {} bytes (maxBytes)",
        limits.max_bytes
    ))
}

/// Reads up to `want` more bytes onto `data`; returns whether the file has ended.
fn fill(
    file: &mut File,
    data: &mut Vec<u8>,
    want: usize,
    path: &str,
    limits: ReadLimits,
    bytes_so_far: &mut u64,
) -> Result<bool, Error> {
    let target = data.len() + want;
    while data.len() < target {
        let len = data.len();
        data.resize(target, 0);
        let n = match file.read(&mut data[len..]) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                data.truncate(len);
                continue;
            }
            Err(e) => {
                return Err(parse_error(format!(
                    "{path}: cannot read ({})",
                    errno_name(&e)
                )))
            }
        };
        data.truncate(len + n);
        if n == 0 {
            return Ok(true);
        }
        *bytes_so_far += n as u64;
        if *bytes_so_far > limits.max_bytes {
            return Err(too_big(path, limits));
        }
    }
    Ok(false)
}

/// Bytes of one block of whole lines that one thread parses.
const BLOCK: usize = 8 << 20;

/// One block's samples, its line count, and whether every line in it was good.
struct ParsedBlock {
    vision: Vec<u32>,
    text: Vec<u32>,
    lines: u64,
    clean: bool,
}

/// Parses a block of whole JSON lines; stops at the first problem (the sequential scanner then
/// re-reads the block to word the error exactly).
fn parse_block(data: &[u8], max_record: usize) -> ParsedBlock {
    let mut p = ParsedBlock {
        vision: Vec::with_capacity(data.len() / 48),
        text: Vec::with_capacity(data.len() / 48),
        lines: 0,
        clean: true,
    };
    let mut start = 0;
    let take = |rec: &[u8], p: &mut ParsedBlock| -> bool {
        if rec.len() > max_record {
            return false;
        }
        if rec.iter().all(|&b| is_json_space(b)) {
            return true;
        }
        match json_sample(rec) {
            Ok((v, t)) => {
                p.vision.push(v);
                p.text.push(t);
                true
            }
            Err(_) => false,
        }
    };
    for end in memchr::memchr_iter(b'\n', data) {
        p.lines += 1;
        if !take(&data[start..end], &mut p) {
            p.clean = false;
            return p;
        }
        start = end + 1;
    }
    if start < data.len() && !take(&data[start..], &mut p) {
        p.clean = false;
    }
    p
}

/// JSON Lines on every core: blocks of whole lines are parsed in parallel and merged in order;
/// a block with a problem (or that would pass `maxSamples`) is re-read by the sequential
/// scanner, so errors are the same as [`JsonLines`]'s.
fn read_jsonl_parallel(
    path: &str,
    out: &mut LoadedSamples,
    limits: ReadLimits,
    bytes_so_far: &mut u64,
) -> Result<(), Error> {
    let (mut file, size) = open_regular(path)?;
    if size > limits.max_bytes - *bytes_so_far {
        return Err(too_big(path, limits));
    }
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
    let mut carry: Vec<u8> = Vec::new();
    let mut next_line = 1u64;
    let mut eof = false;
    let mut first = true;
    while !eof {
        let mut blocks: Vec<Vec<u8>> = Vec::with_capacity(threads);
        let mut carry_too_long = false;
        while blocks.len() < threads && !eof {
            let mut data = std::mem::take(&mut carry);
            eof = fill(&mut file, &mut data, BLOCK, path, limits, bytes_so_far)?;
            if first && (data.len() >= 3 || eof) {
                if data.starts_with(b"\xEF\xBB\xBF") {
                    data.drain(..3);
                }
                first = false;
            }
            if eof {
                blocks.push(data);
            } else if let Some(p) = memchr::memrchr(b'\n', &data) {
                carry = data.split_off(p + 1);
                blocks.push(data);
            } else {
                carry = data;
                if carry.len() > limits.max_record_bytes {
                    carry_too_long = true;
                    break;
                }
            }
        }
        let parsed: Vec<ParsedBlock> = if blocks.len() > 1 {
            std::thread::scope(|scope| {
                let handles: Vec<_> = blocks[1..]
                    .iter()
                    .map(|b| scope.spawn(|| parse_block(b, limits.max_record_bytes)))
                    .collect();
                let mut all = vec![parse_block(&blocks[0], limits.max_record_bytes)];
                all.extend(
                    handles
                        .into_iter()
                        .map(|h| h.join().expect("a parse thread panicked")),
                );
                all
            })
        } else {
            blocks
                .iter()
                .map(|b| parse_block(b, limits.max_record_bytes))
                .collect()
        };
        for (block, p) in blocks.iter().zip(parsed) {
            if !p.clean || (out.text.len() + p.text.len()) as u64 > limits.max_samples {
                let mut scanner = JsonLines {
                    line: next_line - 1,
                    scanned: 0,
                };
                let mut sink = Sink { out, limits, path };
                let mut start = 0;
                scanner.scan(block, &mut start, &mut sink)?;
                scanner.finish(block, start, &mut sink)?;
                next_line = scanner.line + 1;
                continue;
            }
            out.vision.extend_from_slice(&p.vision);
            out.text.extend_from_slice(&p.text);
            next_line += p.lines;
        }
        if carry_too_long {
            let sink = Sink { out, limits, path };
            return Err(sink.too_long(next_line, None));
        }
    }
    Ok(())
}

/// Streams one file through `scanner`, skipping a leading byte-order mark.
fn read_one(
    path: &str,
    scanner: &mut dyn Scanner,
    out: &mut LoadedSamples,
    limits: ReadLimits,
    bytes_so_far: &mut u64,
) -> Result<(), Error> {
    let (mut file, size) = open_regular(path)?;
    let too_big = || too_big(path, limits);
    if size > limits.max_bytes - *bytes_so_far {
        return Err(too_big());
    }
    let mut sink = Sink { out, limits, path };
    let mut buf: Vec<u8> = Vec::with_capacity(CHUNK);
    let mut start = 0usize;
    let mut first = true;
    loop {
        if buf.capacity() - buf.len() < CHUNK / 2 {
            if start > 0 {
                buf.drain(..start);
                scanner.shift(start);
                start = 0;
            }
            buf.reserve(CHUNK);
        }
        let len = buf.len();
        let room = buf.capacity() - len;
        buf.resize(len + room, 0);
        let n = loop {
            match file.read(&mut buf[len..]) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(parse_error(format!(
                        "{path}: cannot read ({})",
                        errno_name(&e)
                    )))
                }
            }
        };
        buf.truncate(len + n);
        if n == 0 {
            break;
        }
        *bytes_so_far += n as u64;
        if *bytes_so_far > limits.max_bytes {
            return Err(too_big());
        }
        if first && buf.len() >= 3 {
            if buf.starts_with(b"\xEF\xBB\xBF") {
                start = 3;
            }
            first = false;
        }
        if !first {
            scanner.scan(&buf, &mut start, &mut sink)?;
        }
    }
    if first && buf.starts_with(b"\xEF\xBB\xBF") {
        start = 3;
    }
    if first {
        scanner.scan(&buf, &mut start, &mut sink)?;
    }
    scanner.finish(&buf, start, &mut sink)
}

/// Reads `files` (path and format) in order into one set of samples.
pub fn read_samples(
    files: &[(String, Format)],
    limits: ReadLimits,
) -> Result<LoadedSamples, Error> {
    if limits.max_record_bytes == 0 || limits.max_record_bytes > MAX_RECORD_BYTES_LIMIT {
        return Err(Error::out_of_range(
            "maxRecordBytes",
            format!("must be between 1 and {MAX_RECORD_BYTES_LIMIT}"),
        ));
    }
    let mut out = LoadedSamples::default();
    let mut bytes = 0u64;
    for (path, format) in files {
        let before = out.text.len();
        let mut scanner: Box<dyn Scanner> = match format {
            Format::Json => Box::<JsonList>::default(),
            Format::Jsonl => Box::<JsonLines>::default(),
            Format::Csv => Box::<Csv>::default(),
        };
        if *format == Format::Jsonl {
            read_jsonl_parallel(path, &mut out, limits, &mut bytes)?;
        } else {
            read_one(path, scanner.as_mut(), &mut out, limits, &mut bytes)?;
        }
        out.counts.push((out.text.len() - before) as u64);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn temp(name: &str, content: &[u8]) -> String {
        let dir = std::env::temp_dir().join(format!("omnibal-io-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join(name);
        std::fs::File::create(&p)
            .unwrap()
            .write_all(content)
            .unwrap();
        p.to_string_lossy().into_owned()
    }

    fn read(name: &str, format: Format, content: &[u8]) -> Result<LoadedSamples, Error> {
        let p = temp(name, content);
        read_samples(&[(p, format)], ReadLimits::default())
    }

    fn message(r: Result<LoadedSamples, Error>) -> (String, String) {
        let e = r.unwrap_err();
        let m = e.to_string();
        let m = m
            .rsplit_once('/')
            .map_or(m.clone(), |(_, tail)| tail.to_owned());
        (e.code().to_owned(), m)
    }

    #[test]
    fn reads_every_format_with_bom_and_crlf() {
        let s = read("a.json", Format::Json, b"\xEF\xBB\xBF[\r\n{\"vit_num\": 1, \"token_num\": 358},\r\n {\"vision\": 5, \"text\": 9}]\r\n").unwrap();
        assert_eq!((s.vision, s.text), (vec![1, 5], vec![358, 9]));
        let s = read("b.jsonl", Format::Jsonl, b"\xEF\xBB\xBF{\"vision\": 3, \"text\": 811}\r\n\r\n{\"vit_num\": 0, \"token_num\": 120}").unwrap();
        assert_eq!((s.vision, s.text), (vec![3, 0], vec![811, 120]));
        let s = read(
            "c.csv",
            Format::Csv,
            b"\xEF\xBB\xBFname,token_num,vit_num\r\n\"x,4,500,y\",1,200\r\n\"a\nb\",\"2\",\"5\"\n",
        )
        .unwrap();
        assert_eq!((s.vision, s.text), (vec![200, 5], vec![1, 2]));
    }

    #[test]
    fn errors_name_file_line_and_element_never_content() {
        assert_eq!(
            message(read("l.json", Format::Json, b"[{\"vit_num\": 1, \"token_num\": 5}, {\"vit_num\": \"secret\", \"token_num\": 5}]")),
            ("ERR_OMNIBAL_INVALID_SAMPLE".into(), "l.json:1: element 1: vit_num must be a number, got a string".into())
        );
        assert_eq!(
            message(read(
                "t.json",
                Format::Json,
                b"[{\"vit_num\": 1, \"token_num\": 5},]"
            )),
            (
                "ERR_OMNIBAL_PARSE".into(),
                "t.json:1: element 1: expected a JSON object".into()
            )
        );
        assert_eq!(
            message(read("q.csv", Format::Csv, b"vision,text\n1,2\n3,x\"y\n")),
            (
                "ERR_OMNIBAL_PARSE".into(),
                "q.csv:3: field 2: malformed quoting".into()
            )
        );
        assert_eq!(
            message(read("n.csv", Format::Csv, b"vision,text\n1,2\n3,\n")),
            (
                "ERR_OMNIBAL_INVALID_SAMPLE".into(),
                "n.csv:3: text (field 2) must be an integer between 1 and 4294967295".into()
            )
        );
        let long = format!(
            "{{\"vit_num\": 1, \"token_num\": 5, \"pad\": \"{}\"}}\n",
            "x".repeat(2 << 20)
        );
        assert_eq!(
            message(read(
                "long.jsonl",
                Format::Jsonl,
                format!("{{\"vit_num\": 1, \"token_num\": 5}}\n{long}").as_bytes()
            )),
            (
                "ERR_OMNIBAL_PARSE".into(),
                "long.jsonl:2: the record is longer than 1048576 bytes (maxRecordBytes)".into()
            )
        );
    }

    #[test]
    fn csv_lines_ending_in_a_bare_cr_are_named() {
        let bare = "a line ends in a bare CR (classic Mac OS line ends) or a CR stands alone outside quotes; use LF or CRLF line ends";
        assert_eq!(
            message(read("mac.csv", Format::Csv, b"vision,text\r1,5\r2,6\r")),
            ("ERR_OMNIBAL_PARSE".into(), format!("mac.csv:1: {bare}"))
        );
        assert_eq!(
            message(read(
                "mac3.csv",
                Format::Csv,
                b"vision,text\n1,5\n\"a\nb\",6\r7,8\n"
            )),
            ("ERR_OMNIBAL_PARSE".into(), format!("mac3.csv:4: {bare}"))
        );
        // A CR inside quotes is data; a last line may end in CR.
        let s = read(
            "cr-ok.csv",
            Format::Csv,
            b"n,vision,text\r\n\"a\rb\",2,6\r\n3,3,7\r",
        )
        .unwrap();
        assert_eq!((s.vision, s.text), (vec![2, 3], vec![6, 7]));
    }

    #[test]
    fn limits_hold_while_streaming() {
        let p = temp(
            "many.jsonl",
            "{\"vision\": 1, \"text\": 2}\n".repeat(10).as_bytes(),
        );
        let limits = ReadLimits {
            max_samples: 4,
            ..ReadLimits::default()
        };
        let e = read_samples(&[(p.clone(), Format::Jsonl)], limits).unwrap_err();
        assert!(
            e.to_string()
                .ends_with("many.jsonl:5: more than 4 samples (maxSamples)"),
            "{e}"
        );
        let limits = ReadLimits {
            max_bytes: 100,
            ..ReadLimits::default()
        };
        let e = read_samples(&[(p, Format::Jsonl)], limits).unwrap_err();
        assert!(
            e.to_string()
                .ends_with("the input is larger than 100 bytes (maxBytes)"),
            "{e}"
        );
    }

    #[test]
    fn only_regular_files() {
        let dir = std::env::temp_dir();
        let e = read_samples(
            &[(dir.to_string_lossy().into_owned(), Format::Json)],
            ReadLimits::default(),
        )
        .unwrap_err();
        assert!(
            e.to_string().ends_with("not a regular file") || e.to_string().contains("EISDIR"),
            "{e}"
        );
        let e = read_samples(
            &[("/nonexistent/x.json".into(), Format::Json)],
            ReadLimits::default(),
        )
        .unwrap_err();
        assert_eq!(e.to_string(), "/nonexistent/x.json: cannot read (ENOENT)");
        #[cfg(unix)]
        {
            let fifo = dir.join(format!("omnibal-fifo-{}", std::process::id()));
            let _ = std::fs::remove_file(&fifo);
            if std::process::Command::new("mkfifo")
                .arg(&fifo)
                .status()
                .is_ok_and(|s| s.success())
            {
                let e = read_samples(
                    &[(fifo.to_string_lossy().into_owned(), Format::Jsonl)],
                    ReadLimits::default(),
                )
                .unwrap_err();
                assert!(e.to_string().ends_with("not a regular file"), "{e}");
                std::fs::remove_file(&fifo).unwrap();
            }
        }
    }
}
