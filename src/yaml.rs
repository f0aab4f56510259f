//! YAML in and out, in one place. Instruments and the configuration file
//! are YAML; they are read and written with `serde-saphyr` (pure Rust, no
//! unsafe code, maintained; `serde_yaml` is deprecated by its author), and
//! its errors become one line that ends with the position, `... at line L
//! column C`, which `instrument check` turns into `file:L: ...`.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// A YAML document that could not be read into the expected type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct YamlError {
    /// 1-based line of the problem, 0 when unknown.
    pub line: usize,
    /// 1-based column of the problem, 0 when unknown.
    pub column: usize,
    /// What is wrong, ending with the position when it is known.
    pub message: String,
}

/// Reads one YAML document as a `T`.
pub fn from_str<T: DeserializeOwned>(src: &str) -> Result<T, YamlError> {
    serde_saphyr::from_str(src).map_err(|e| {
        let (line, column) = e.location().map_or((0, 0), |l| (to_usize(l.line()), to_usize(l.column())));
        // Without the source snippet the message is one line; the position
        // is added here in one form whatever the error kind.
        let text = e.without_snippet().to_string();
        let text = text.lines().next().unwrap_or_default().trim().to_owned();
        let message = if line > 0 { format!("{text} at line {line} column {column}") } else { text };
        YamlError { line, column, message }
    })
}

/// Writes `value` as a YAML document.
pub fn to_string<T: Serialize>(value: &T) -> Result<String, serde_saphyr::ser::Error> {
    serde_saphyr::to_string(value)
}

fn to_usize(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize, Serialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Doc {
        name: String,
        #[serde(default)]
        size: u32,
    }

    #[test]
    fn a_wrong_type_is_reported_at_its_line_and_column() {
        let e = from_str::<Doc>("name: a\nsize: big\n").expect_err("size is not a number");
        assert_eq!((e.line, e.column), (2, 7), "{e}");
        assert!(e.message.ends_with("at line 2 column 7"), "{e}");
        assert_eq!(e.message.lines().count(), 1, "{e}");
    }

    #[test]
    fn an_unknown_key_is_reported_with_its_name_and_line() {
        let e = from_str::<Doc>("name: a\n\nsise: 3\n").expect_err("typo");
        assert_eq!(e.line, 3, "{e}");
        assert!(e.message.contains("sise"), "{e}");
    }

    #[test]
    fn a_syntax_error_is_reported_at_its_line() {
        let e = from_str::<Doc>("name: a\nsize: [1, 2\n").expect_err("unclosed sequence");
        assert!(e.line >= 2, "{e}");
    }

    #[test]
    fn a_document_written_reads_back() {
        let doc = Doc { name: "x: y".into(), size: 3 };
        let text = to_string(&doc).expect("serialises");
        assert_eq!(from_str::<Doc>(&text).expect("reads back"), doc);
    }
}
