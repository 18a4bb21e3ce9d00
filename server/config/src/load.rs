//! Reading a config file: JSON, JSON with comments, or TOML, chosen by extension.

use std::path::Path;

use crate::ConfigError;
use crate::server::ServerConfig;

/// File formats the server reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// JSON; `//` and `/* */` comments are allowed (the seed's examples carry them).
    Json,
    Toml,
}

impl Format {
    pub fn from_path(path: &Path) -> Format {
        match path.extension().and_then(|e| e.to_str()) {
            Some("toml") => Format::Toml,
            _ => Format::Json,
        }
    }
}

/// Reads and parses a config file. Environment overrides and validation are separate steps.
pub fn load_file(path: &Path) -> Result<ServerConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.display().to_string(),
        source,
    })?;
    parse_str(&text, Format::from_path(path)).map_err(|e| e.in_file(path))
}

/// Parses config text. Errors name the offending key's path and its line.
pub fn parse_str(text: &str, format: Format) -> Result<ServerConfig, ConfigError> {
    match format {
        Format::Json => {
            let stripped = strip_json_comments(text);
            let mut de = serde_json::Deserializer::from_str(&stripped);
            let result: Result<ServerConfig, _> = serde_path_to_error::deserialize(&mut de);
            let config = result.map_err(|e| {
                let inner = e.inner();
                ConfigError::Parse {
                    file: None,
                    path: e.path().to_string(),
                    line: inner.line(),
                    column: inner.column(),
                    message: strip_position(&inner.to_string()),
                }
            })?;
            de.end().map_err(|e| ConfigError::Parse {
                file: None,
                path: ".".into(),
                line: e.line(),
                column: e.column(),
                message: strip_position(&e.to_string()),
            })?;
            Ok(config)
        }
        Format::Toml => {
            let result: Result<ServerConfig, _> = toml::from_str(text);
            result.map_err(|e| {
                let (line, column) = e
                    .span()
                    .map(|span| line_col(text, span.start))
                    .unwrap_or((0, 0));
                ConfigError::Parse {
                    file: None,
                    path: String::new(),
                    line,
                    column,
                    message: e.message().to_string(),
                }
            })
        }
    }
}

/// serde_json appends " at line L column C"; we report the position in our own words.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before
        .rfind('\n')
        .map_or(before.len(), |i| before.len() - i - 1)
        + 1;
    (line, column)
}

/// Blanks out `//` and `/* */` comments outside strings, keeping every newline, so the JSON
/// parser's line and column numbers still point into the original file.
pub fn strip_json_comments(text: &str) -> String {
    #[derive(PartialEq)]
    enum State {
        Code,
        Str,
        StrEscape,
        Line,
        Block,
    }
    let mut out = String::with_capacity(text.len());
    let mut state = State::Code;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match state {
            State::Code => match c {
                '"' => {
                    state = State::Str;
                    out.push(c);
                }
                '/' if chars.peek() == Some(&'/') => {
                    chars.next();
                    out.push_str("  ");
                    state = State::Line;
                }
                '/' if chars.peek() == Some(&'*') => {
                    chars.next();
                    out.push_str("  ");
                    state = State::Block;
                }
                _ => out.push(c),
            },
            State::Str => {
                out.push(c);
                match c {
                    '\\' => state = State::StrEscape,
                    '"' => state = State::Code,
                    _ => {}
                }
            }
            State::StrEscape => {
                out.push(c);
                state = State::Str;
            }
            State::Line => {
                if c == '\n' {
                    out.push('\n');
                    state = State::Code;
                } else {
                    out.push(' ');
                }
            }
            State::Block => {
                if c == '*' && chars.peek() == Some(&'/') {
                    chars.next();
                    out.push_str("  ");
                    state = State::Code;
                } else if c == '\n' {
                    out.push('\n');
                } else {
                    out.push(' ');
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_are_blanked_but_strings_kept() {
        let text = "{\n \"a\": \"x//y\", // note\n /* b */ \"b\": 1 }";
        let stripped = strip_json_comments(text);
        assert_eq!(stripped.lines().count(), text.lines().count());
        let v: serde_json::Value = serde_json::from_str(&stripped).unwrap();
        assert_eq!(v["a"], "x//y");
        assert_eq!(v["b"], 1);
    }

    #[test]
    fn unknown_key_names_its_path_and_line() {
        let text = "{\n  \"cache\": {\n    \"driver\": \"memory\",\n    \"drvier\": 1\n  }\n}";
        let err = parse_str(text, Format::Json).unwrap_err().to_string();
        assert!(err.contains("cache"), "{err}");
        assert!(err.contains("drvier"), "{err}");
        assert!(err.contains("line 4"), "{err}");
    }

    #[test]
    fn bad_driver_value_is_an_error() {
        let err = parse_str(r#"{"adapter":{"driver":"kafka"}}"#, Format::Json)
            .unwrap_err()
            .to_string();
        assert!(err.contains("adapter.driver"), "{err}");
        assert!(err.contains("kafka"), "{err}");
    }

    #[test]
    fn toml_is_read_and_errors_have_lines() {
        let cfg = parse_str("port = 7000\n[adapter]\ndriver = \"redis\"\n", Format::Toml).unwrap();
        assert_eq!(cfg.port, 7000);
        let err = parse_str("port = 7000\n[cache]\nbogus = 1\n", Format::Toml)
            .unwrap_err()
            .to_string();
        assert!(err.contains("bogus") && err.contains("line 3"), "{err}");
    }
}
