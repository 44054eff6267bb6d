//! CSV records as people write them (RFC 4180 and its common relaxations), read byte by byte
//! from any [`BufRead`] without holding more than one record:
//!
//! - a field in double quotes may hold the delimiter, line breaks and quotes (written twice,
//!   `""`); spaces or tabs around the quotes are ignored;
//! - records end at LF, CRLF or a lone CR (old Mac files), in any mix; blank lines (and lines of
//!   spaces only) are skipped;
//! - a UTF-8 byte order mark at the start of a file is skipped ([`skip_bom`]);
//! - a quote inside an unquoted field is an ordinary character (`5"` stays `5"`).
//!
//! Each record knows the line it starts on (lines counted by their breaks, CRLF as one) and the
//! byte offset of its first byte, so a streaming reader can come back to it.

use std::io::{self, BufRead, Read};

/// One record: its fields' bytes (quotes removed, `""` unescaped) back to back.
#[derive(Default)]
pub struct Record {
    bytes: Vec<u8>,
    /// Where each field ends in `bytes`.
    ends: Vec<usize>,
    /// Whether each field was quoted (its text is then kept as written, spaces included).
    quoted: Vec<bool>,
    /// The line it starts on (1-based).
    pub line: usize,
    /// The byte offset of its first byte in the input.
    pub offset: u64,
}

impl Record {
    fn clear(&mut self) {
        self.bytes.clear();
        self.ends.clear();
        self.quoted.clear();
    }

    fn end_field(&mut self, quoted: bool) {
        self.ends.push(self.bytes.len());
        self.quoted.push(quoted);
    }

    /// Number of fields.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Field `i` (0-based) as text: an unquoted field without its surrounding spaces, a quoted
    /// one as written. `Err` when it is not UTF-8.
    pub fn cell(&self, i: usize) -> Result<&str, std::str::Utf8Error> {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        let text = std::str::from_utf8(&self.bytes[start..self.ends[i]])?;
        Ok(if self.quoted[i] { text } else { text.trim() })
    }

    /// A line of spaces only.
    fn is_blank(&self) -> bool {
        self.ends.len() == 1 && !self.quoted[0] && self.bytes.iter().all(u8::is_ascii_whitespace)
    }
}

/// Why a record could not be read.
#[derive(Debug)]
pub enum ReadError {
    Io(io::Error),
    /// The text is not CSV: a message to put after `line N`.
    Format {
        line: usize,
        message: String,
    },
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before a field's first non-blank character.
    FieldStart,
    Unquoted,
    Quoted,
    /// A quote inside a quoted field: its end, or the first of `""`.
    QuoteInQuoted,
    /// Spaces after a quoted field's closing quote.
    AfterQuote,
}

/// Reads records one at a time.
pub struct Reader<R> {
    inner: R,
    delimiter: u8,
    /// Offset of the next byte.
    offset: u64,
    /// Line of the next byte.
    line: usize,
    /// The last byte was a CR: an LF right after it ends the same line.
    last_cr: bool,
}

/// The UTF-8 byte order mark some editors put at the start of a file.
const BOM: [u8; 3] = [0xEF, 0xBB, 0xBF];

/// `reader` with a UTF-8 byte order mark at its start left out, and the number of bytes left out.
pub fn skip_bom<'r>(mut reader: impl Read + 'r) -> io::Result<(Box<dyn Read + 'r>, u64)> {
    let mut first = Vec::with_capacity(3);
    (&mut reader).take(3).read_to_end(&mut first)?;
    if first == BOM {
        return Ok((Box::new(reader), 3));
    }
    Ok((Box::new(io::Cursor::new(first).chain(reader)), 0))
}

fn is_blank(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

impl<R: BufRead> Reader<R> {
    /// A reader of `inner`, whose first byte is at `offset` of the file, on line 1. `delimiter`
    /// is one ASCII character other than a quote or a line break.
    pub fn new(inner: R, delimiter: u8, offset: u64) -> Self {
        debug_assert!(delimiter.is_ascii() && !matches!(delimiter, b'"' | b'\r' | b'\n'));
        Reader { inner, delimiter, offset, line: 1, last_cr: false }
    }

    /// The offset of the byte after the last one read: at the end, the input's length.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Reads the next record into `record`; `Ok(false)` at the end of the input.
    pub fn read(&mut self, record: &mut Record) -> Result<bool, ReadError> {
        record.clear();
        let delimiter = self.delimiter;
        let mut state = State::FieldStart;
        let mut started = false;
        // Where the field being read starts in `record.bytes`, and the line its quote opened.
        let mut field_start = 0;
        let mut quote_line = 0;
        loop {
            let chunk = match self.inner.fill_buf() {
                Ok(chunk) => chunk,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(ReadError::Io(e)),
            };
            if chunk.is_empty() {
                if state == State::Quoted {
                    return Err(ReadError::Format {
                        line: quote_line,
                        message: format!(
                            "column {}: a quoted field opens here and never closes (a quote inside a quoted field \
                             is written twice: \"\")",
                            record.len() + 1
                        ),
                    });
                }
                if !started {
                    return Ok(false);
                }
                record.end_field(state != State::FieldStart && state != State::Unquoted);
                return Ok(!record.is_blank());
            }
            let mut used = 0;
            let mut complete = false;
            for &b in chunk {
                let at = self.offset + used as u64;
                let line = self.line;
                used += 1;
                let after_cr = self.last_cr;
                self.last_cr = b == b'\r';
                let line_break = b == b'\r' || b == b'\n';
                if b == b'\r' || (b == b'\n' && !after_cr) {
                    self.line += 1;
                }
                if !started {
                    if line_break {
                        continue;
                    }
                    started = true;
                    record.line = line;
                    record.offset = at;
                }
                match state {
                    State::FieldStart | State::Unquoted if b == delimiter => {
                        record.end_field(false);
                        field_start = record.bytes.len();
                        state = State::FieldStart;
                    }
                    State::FieldStart | State::Unquoted if line_break => {
                        record.end_field(false);
                        complete = true;
                    }
                    State::FieldStart if b == b'"' => {
                        record.bytes.truncate(field_start);
                        quote_line = line;
                        state = State::Quoted;
                    }
                    State::FieldStart if is_blank(b) => record.bytes.push(b),
                    State::FieldStart | State::Unquoted => {
                        record.bytes.push(b);
                        state = State::Unquoted;
                    }
                    State::Quoted if b == b'"' => state = State::QuoteInQuoted,
                    State::Quoted => record.bytes.push(b),
                    State::QuoteInQuoted if b == b'"' => {
                        record.bytes.push(b'"');
                        state = State::Quoted;
                    }
                    State::QuoteInQuoted | State::AfterQuote if b == delimiter => {
                        record.end_field(true);
                        field_start = record.bytes.len();
                        state = State::FieldStart;
                    }
                    State::QuoteInQuoted | State::AfterQuote if line_break => {
                        record.end_field(true);
                        complete = true;
                    }
                    State::QuoteInQuoted | State::AfterQuote if is_blank(b) => state = State::AfterQuote,
                    State::QuoteInQuoted | State::AfterQuote => {
                        return Err(ReadError::Format {
                            line,
                            message: format!(
                                "column {}: text after the closing quote of a quoted field (a quote inside a quoted \
                                 field is written twice: \"\")",
                                record.len() + 1
                            ),
                        })
                    }
                }
                if complete {
                    if !record.is_blank() {
                        break;
                    }
                    record.clear();
                    (started, complete, field_start, state) = (false, false, 0, State::FieldStart);
                }
            }
            self.inner.consume(used);
            self.offset += used as u64;
            if complete {
                return Ok(true);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every record of `text` as (line, offset, cells).
    fn records(text: &[u8], delimiter: u8) -> Result<Vec<(usize, u64, Vec<String>)>, String> {
        let mut reader = Reader::new(text, delimiter, 0);
        let mut record = Record::default();
        let mut out = Vec::new();
        loop {
            match reader.read(&mut record) {
                Ok(true) => out.push((
                    record.line,
                    record.offset,
                    (0..record.len()).map(|i| record.cell(i).unwrap().to_string()).collect(),
                )),
                Ok(false) => return Ok(out),
                Err(ReadError::Format { line, message }) => return Err(format!("line {line}: {message}")),
                Err(ReadError::Io(e)) => return Err(e.to_string()),
            }
        }
    }

    fn cells(text: &str) -> Vec<Vec<String>> {
        records(text.as_bytes(), b',').unwrap().into_iter().map(|r| r.2).collect()
    }

    #[test]
    fn quotes_hold_delimiters_line_breaks_and_quotes() {
        assert_eq!(
            cells("a,\"b,c\",\"say \"\"hi\"\"\"\n\"x\ny\",2,\" 3 \"\n"),
            [vec!["a", "b,c", "say \"hi\""], vec!["x\ny", "2", " 3 "]]
        );
        assert_eq!(cells(" \"a\" , b ,5\"\n"), [vec!["a", "b", "5\""]]);
        assert_eq!(cells("a,,\"\"\n,\n"), [vec!["a", "", ""], vec!["", ""]]);
    }

    #[test]
    fn lf_crlf_and_cr_end_records_and_blank_lines_are_skipped() {
        for text in ["a,b\n1,2\n\n3,4", "a,b\r\n1,2\r\n\r\n3,4\r\n", "a,b\r1,2\r\r3,4\r", "a,b\r\n1,2\n\r3,4"] {
            let got = records(text.as_bytes(), b',').unwrap();
            let lines: Vec<usize> = got.iter().map(|r| r.0).collect();
            assert_eq!(lines, [1, 2, 4], "{text:?}");
            assert_eq!(got[2].2, ["3", "4"], "{text:?}");
            // The offset of a record is where its text starts.
            for (_, offset, cells) in &got {
                assert!(text[*offset as usize..].starts_with(&cells[0]), "{text:?}");
            }
        }
        assert_eq!(cells("  \n1\n \t \n"), [vec!["1"]]);
    }

    #[test]
    fn a_quote_left_open_or_text_after_a_closing_quote_is_named_by_line_and_column() {
        assert_eq!(
            records(b"a,b\n1,\"2\n3,4\n", b',').unwrap_err(),
            "line 2: column 2: a quoted field opens here and never closes (a quote inside a quoted field is written \
             twice: \"\")"
        );
        assert_eq!(
            records(b"a,b\r\r1,\"2\"x\r", b',').unwrap_err(),
            "line 3: column 2: text after the closing quote of a quoted field (a quote inside a quoted field is \
             written twice: \"\")"
        );
    }

    #[test]
    fn a_byte_order_mark_is_skipped_and_counted() {
        let (mut reader, skipped) = skip_bom(&b"\xEF\xBB\xBFa,b\n"[..]).unwrap();
        let mut rest = String::new();
        reader.read_to_string(&mut rest).unwrap();
        assert_eq!((rest.as_str(), skipped), ("a,b\n", 3));
        let (mut reader, skipped) = skip_bom(&b"ab"[..]).unwrap();
        let mut rest = String::new();
        reader.read_to_string(&mut rest).unwrap();
        assert_eq!((rest.as_str(), skipped), ("ab", 0));
    }

    #[test]
    fn other_delimiters_and_byte_at_a_time_input_read_the_same() {
        assert_eq!(records(b"a;\"b;c\"\t;x\ty\n", b';').unwrap()[0].2, ["a", "b;c", "x\ty"]);
        assert_eq!(records(b"a\t \"b\" \tc\n", b'\t').unwrap()[0].2, ["a", "b", "c"]);
        // One byte per `fill_buf`: every state crosses a chunk boundary.
        let text = b"x,\"a\"\"b\"\r\n\"c\r\nd\",e\r";
        let slow = io::BufReader::with_capacity(1, &text[..]);
        let mut reader = Reader::new(slow, b',', 0);
        let mut record = Record::default();
        let mut got = Vec::new();
        while reader.read(&mut record).unwrap() {
            got.push((record.line, (0..record.len()).map(|i| record.cell(i).unwrap().to_string()).collect::<Vec<_>>()));
        }
        assert_eq!(got, [(1, vec!["x".to_string(), "a\"b".into()]), (2, vec!["c\r\nd".into(), "e".into()])]);
        assert_eq!(reader.offset(), text.len() as u64);
    }
}
