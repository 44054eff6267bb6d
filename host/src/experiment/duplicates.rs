//! Duplicate keys in JSON objects. serde_json keeps the last one silently; in an experiment
//! file, two `epochs` keys are a mistake to report, with the positions of both.
//!
//! A small scanner over text serde_json has already parsed (so it is valid JSON): it follows
//! objects and arrays for the path, and compares keys as decoded strings (`"a"` and `"\u0061"`
//! are the same key).

use std::collections::HashMap;

use super::Problem;

struct Scanner<'t> {
    text: &'t [u8],
    at: usize,
    line: usize,
    column: usize,
}

impl Scanner<'_> {
    fn peek(&self) -> Option<u8> {
        self.text.get(self.at).copied()
    }

    fn bump(&mut self) {
        if let Some(&b) = self.text.get(self.at) {
            self.at += 1;
            if b == b'\n' {
                self.line += 1;
                self.column = 1;
            } else if b & 0xC0 != 0x80 {
                // Columns count characters, not the continuation bytes of UTF-8.
                self.column += 1;
            }
        }
    }

    fn skip_space(&mut self) {
        while self.peek().is_some_and(|b| b.is_ascii_whitespace()) {
            self.bump();
        }
    }

    /// A string token, decoded.
    fn string(&mut self) -> String {
        let start = self.at;
        self.bump(); // opening quote
        while let Some(b) = self.peek() {
            self.bump();
            match b {
                b'\\' => self.bump(),
                b'"' => break,
                _ => {}
            }
        }
        let raw = std::str::from_utf8(&self.text[start..self.at]).unwrap_or("\"\"");
        serde_json::from_str(raw).unwrap_or_default()
    }

    fn value(&mut self, path: &str, problems: &mut Vec<Problem>) {
        self.skip_space();
        match self.peek() {
            Some(b'{') => self.object(path, problems),
            Some(b'[') => {
                self.bump();
                let mut index = 0;
                loop {
                    self.skip_space();
                    match self.peek() {
                        Some(b']') | None => break self.bump(),
                        Some(b',') => self.bump(),
                        _ => {
                            self.value(&format!("{path}[{index}]"), problems);
                            index += 1;
                        }
                    }
                }
            }
            Some(b'"') => {
                self.string();
            }
            _ => {
                while self.peek().is_some_and(|b| !matches!(b, b',' | b'}' | b']') && !b.is_ascii_whitespace()) {
                    self.bump();
                }
            }
        }
    }

    fn object(&mut self, path: &str, problems: &mut Vec<Problem>) {
        self.bump();
        let mut seen: HashMap<String, (usize, usize)> = HashMap::new();
        loop {
            self.skip_space();
            match self.peek() {
                Some(b'}') | None => return self.bump(),
                Some(b',') => self.bump(),
                Some(b'"') => {
                    let position = (self.line, self.column);
                    let key = self.string();
                    let key_path = if path.is_empty() { key.clone() } else { format!("{path}.{key}") };
                    if let Some(&(line, column)) = seen.get(&key) {
                        problems.push(Problem {
                            path: key_path.clone(),
                            message: format!(
                                "duplicate key (line {line}, column {column} and line {}, column {})",
                                position.0, position.1
                            ),
                        });
                    } else {
                        seen.insert(key, position);
                    }
                    self.skip_space();
                    self.bump(); // the colon
                    self.value(&key_path, problems);
                }
                _ => self.bump(),
            }
        }
    }
}

/// Every key that appears twice in one object of `text` (valid JSON), with both positions.
pub fn find(text: &str) -> Vec<Problem> {
    let mut scanner = Scanner { text: text.as_bytes(), at: 0, line: 1, column: 1 };
    let mut problems = Vec::new();
    scanner.value("", &mut problems);
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_both_positions_of_each_duplicate_at_its_path() {
        let text = "{\n  \"training\": {\"epochs\": 3, \"lr\": [1, {\"a\": 1, \"\\u0061\": 2}],\n    \"epochs\": 4},\n  \"é\": 1, \"é\": 2\n}";
        let found: Vec<String> = find(text).iter().map(ToString::to_string).collect();
        assert_eq!(
            found,
            [
                "training.lr[1].a: duplicate key (line 2, column 40 and line 2, column 48)",
                "training.epochs: duplicate key (line 2, column 16 and line 3, column 5)",
                "é: duplicate key (line 4, column 3 and line 4, column 11)",
            ]
        );
        assert!(find("{\"a\": {\"a\": 1}, \"b\": [{\"a\": 1}, {\"a\": 2}]}").is_empty());
    }
}
