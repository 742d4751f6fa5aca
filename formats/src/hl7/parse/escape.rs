//! HL7 escape sequences.
//!
//! A delimiter inside a value is written as an escape sequence between two
//! escape characters: `\F\` field, `\S\` component, `\T\` subcomponent,
//! `\R\` repetition, `\E\` escape, `\P\` truncation (v2.7), `\Xhh..\` raw
//! bytes in hex, and the formatted-text commands `\.br\`, `\H\`, `\N\` and
//! friends. Decoding works on bytes and only then converts to UTF-8, so a
//! sequence right next to multi-byte text (`Ä\T\ö`) can never split a
//! character: the escape character is ASCII and never occurs inside a UTF-8
//! multi-byte sequence. Anything malformed (no closing escape character, an
//! unknown sequence, odd or non-hex digits after `X`) is kept literally
//! rather than rejected, because a receiver cannot repair the sender's text
//! and dropping it would lose data.

use super::Delimiters;
use memchr::memchr;
use std::borrow::Cow;

/// Decodes the escape sequences of a leaf value.
///
/// - `\F\ \S\ \T\ \R\ \E\ \P\` become the message's delimiters;
/// - `\Xhh..\` becomes the bytes given in hex (an even number of digits);
/// - `\.br\` and `\.sp\` (with or without a count) become a newline; the
///   highlighting (`\H\`, `\N\`) and other formatting commands (`\.fi\`,
///   `\.nf\`, `\.in±n\`, `\.ti±n\`, `\.sk n\`, `\.ce\`) are dropped;
/// - character-set (`\C..\`, `\M..\`), locally defined (`\Z..\`) and unknown
///   sequences, and an escape character without a closing one, are left as
///   they are.
///
/// Bytes that are not UTF-8 are replaced with U+FFFD. Borrows when there is
/// nothing to decode.
pub fn decode_escapes<'a>(raw: &'a [u8], delims: &Delimiters) -> Cow<'a, str> {
    let Some(esc) = delims.escape else {
        return String::from_utf8_lossy(raw);
    };
    let Some(first) = memchr(esc, raw) else {
        return String::from_utf8_lossy(raw);
    };
    let mut out: Vec<u8> = Vec::with_capacity(raw.len());
    out.extend_from_slice(raw.get(..first).unwrap_or_default());
    let mut i = first;
    // Invariant: raw[i] is an escape character.
    while let Some(after) = raw.get(i + 1..) {
        let Some(len) = memchr(esc, after) else {
            // No closing escape character: literal.
            out.extend_from_slice(raw.get(i..).unwrap_or_default());
            return into_string(out);
        };
        let seq = after.get(..len).unwrap_or_default();
        let close = i + 1 + len;
        if !expand(seq, delims, esc, &mut out) {
            out.extend_from_slice(raw.get(i..=close).unwrap_or_default());
        }
        let next = close + 1;
        let rest = raw.get(next..).unwrap_or_default();
        match memchr(esc, rest) {
            Some(n) => {
                out.extend_from_slice(rest.get(..n).unwrap_or_default());
                i = next + n;
            }
            None => {
                out.extend_from_slice(rest);
                return into_string(out);
            }
        }
    }
    into_string(out)
}

/// Appends the expansion of one escape sequence (the bytes between the
/// escape characters); `false` when it is not one we decode.
fn expand(seq: &[u8], d: &Delimiters, esc: u8, out: &mut Vec<u8>) -> bool {
    let single = |b: Option<u8>, out: &mut Vec<u8>| match b {
        Some(b) => {
            out.push(b);
            true
        }
        None => false,
    };
    match seq {
        b"F" => single(Some(d.field), out),
        b"S" => single(Some(d.component), out),
        b"T" => single(d.subcomponent, out),
        b"R" => single(Some(d.repetition), out),
        b"E" => single(Some(esc), out),
        b"P" => single(d.truncation, out),
        b"H" | b"N" => true,
        [b'X', hex @ ..] => {
            if hex.is_empty() || hex.len() % 2 != 0 {
                return false;
            }
            let start = out.len();
            for pair in hex.chunks_exact(2) {
                let byte = match pair {
                    [h, l] => hex_val(*h).zip(hex_val(*l)).map(|(h, l)| (h << 4) | l),
                    _ => None,
                };
                match byte {
                    Some(b) => out.push(b),
                    None => {
                        out.truncate(start);
                        return false;
                    }
                }
            }
            true
        }
        [b'.', cmd @ ..] => match cmd.get(..2) {
            Some(b"br") if cmd.len() == 2 => {
                out.push(b'\n');
                true
            }
            Some(b"sp") if cmd.get(2..).is_some_and(is_count) => {
                out.push(b'\n');
                true
            }
            Some(b"fi" | b"nf" | b"ce") if cmd.len() == 2 => true,
            Some(b"in" | b"ti" | b"sk") if cmd.get(2..).is_some_and(is_count) => true,
            _ => false,
        },
        _ => false,
    }
}

/// An optional sign, spaces and digits (the argument of `.sp`, `.in`, ...).
fn is_count(arg: &[u8]) -> bool {
    arg.iter().all(|b| b.is_ascii_digit() || matches!(b, b'+' | b'-' | b' '))
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn into_string(bytes: Vec<u8>) -> Cow<'static, str> {
    match String::from_utf8(bytes) {
        Ok(s) => Cow::Owned(s),
        Err(e) => Cow::Owned(String::from_utf8_lossy(e.as_bytes()).into_owned()),
    }
}

/// Escapes text for use as a leaf value with these delimiters: delimiters
/// become `\F\`, `\S\`, ..., a line feed becomes `\.br\`, other control
/// characters `\Xhh\`. When the message has no escape character, delimiters
/// and control characters are replaced with a space instead (there is no
/// way to write them).
pub fn encode_escapes(text: &str, d: &Delimiters) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        let Ok(b) = u8::try_from(c) else {
            out.push(c);
            continue;
        };
        let named = if b == d.field {
            Some('F')
        } else if b == d.component {
            Some('S')
        } else if b == d.repetition {
            Some('R')
        } else if Some(b) == d.subcomponent {
            Some('T')
        } else if Some(b) == d.escape {
            Some('E')
        } else if Some(b) == d.truncation {
            Some('P')
        } else {
            None
        };
        let control = b.is_ascii_control() && b != b'\t';
        if named.is_none() && !control {
            out.push(c);
            continue;
        }
        let Some(esc) = d.escape.map(char::from) else {
            out.push(' ');
            continue;
        };
        out.push(esc);
        match (named, b) {
            (Some(n), _) => out.push(n),
            // `\.br\` cannot be written when '.' is a delimiter.
            (None, b'\n') if !d.is_delimiter(b'.') => out.push_str(".br"),
            (None, b) => {
                out.push('X');
                out.push_str(&format!("{b:02X}"));
            }
        }
        out.push(esc);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(s: &str) -> String {
        decode_escapes(s.as_bytes(), &Delimiters::default()).into_owned()
    }

    #[test]
    fn decodes_delimiter_escapes() {
        assert_eq!(dec(r"a\F\b\S\c\T\d\R\e\E\f"), r"a|b^c&d~e\f");
        assert_eq!(dec(r"A\T\E"), "A&E");
        assert_eq!(dec("plain"), "plain");
        assert_eq!(dec(""), "");
    }

    #[test]
    fn decodes_next_to_multibyte_text() {
        assert_eq!(dec("Ä\\T\\ö"), "Ä&ö");
        assert_eq!(dec("日本\\F\\語\\.br\\€"), "日本|語\n€");
        assert_eq!(dec("\\S\\Ä"), "^Ä");
        assert_eq!(dec("Ä\\X41\\"), "ÄA");
        assert_eq!(dec("\\XC384\\ö"), "Äö");
    }

    #[test]
    fn decodes_hex_and_formatting() {
        assert_eq!(dec(r"\X0D0A\"), "\r\n");
        assert_eq!(dec(r"line1\.br\line2"), "line1\nline2");
        assert_eq!(dec(r"\H\bold\N\ normal"), "bold normal");
        assert_eq!(dec(r"a\.sp 2\b\.in+4\c\.fi\d"), "a\nbcd");
        // Invalid UTF-8 from hex is replaced, never a panic.
        assert_eq!(dec(r"\XFF\"), "\u{FFFD}");
    }

    #[test]
    fn leaves_malformed_escapes_literal() {
        assert_eq!(dec(r"a\b"), r"a\b");
        assert_eq!(dec("Ä\\"), "Ä\\");
        assert_eq!(dec(r"\\"), r"\\");
        assert_eq!(dec(r"\Q\x"), r"\Q\x");
        assert_eq!(dec(r"\X4\"), r"\X4\");
        assert_eq!(dec(r"\XZZ\"), r"\XZZ\");
        assert_eq!(dec(r"\X\"), r"\X\");
        assert_eq!(dec(r"\C2842\x"), r"\C2842\x");
        assert_eq!(dec(r"\Zfoo\"), r"\Zfoo\");
        assert_eq!(dec(r"\.xx\"), r"\.xx\");
        assert_eq!(dec(r"\P\"), r"\P\");
        assert_eq!(dec(r"\F\\"), r"|\");
        assert_eq!(dec("\\F\\ö\\"), "|ö\\");
        assert_eq!(dec(&"\\".repeat(7)), "\\".repeat(7));
    }

    #[test]
    fn without_escape_character_nothing_is_decoded() {
        let d = Delimiters { escape: None, subcomponent: Some(b'}'), ..Delimiters::default() };
        assert_eq!(decode_escapes(br"a\T\b", &d), r"a\T\b");
        assert_eq!(encode_escapes("a|b^c}d\re", &d), "a b c d e");
    }

    #[test]
    fn non_utf8_is_lossy() {
        assert_eq!(decode_escapes(b"a\xFFb\\T\\", &Delimiters::default()), "a\u{FFFD}b&");
    }

    #[test]
    fn newline_is_hex_when_dot_is_a_delimiter() {
        // Regression (found by proptest): `\.br\` is ambiguous when '.' is
        // the escape character or any other delimiter.
        for d in [
            Delimiters { escape: Some(b'.'), ..Delimiters::default() },
            Delimiters { field: b'.', escape: Some(b'$'), ..Delimiters::default() },
        ] {
            let enc = encode_escapes("a\nb", &d);
            assert!(!enc.contains("br"), "{enc}");
            assert_eq!(decode_escapes(enc.as_bytes(), &d), "a\nb");
        }
    }

    #[test]
    fn encode_round_trips() {
        let d = Delimiters::default();
        for s in ["a|b^c&d~e\\f", "Ä&ö", "line\nnext\rx\u{1}", "plain", ""] {
            let enc = encode_escapes(s, &d);
            assert!(!enc.contains(['|', '^', '&', '~', '\r', '\n']), "{enc}");
            assert_eq!(decode_escapes(enc.as_bytes(), &d), s);
        }
        assert_eq!(encode_escapes("a|b", &d), r"a\F\b");
    }
}
