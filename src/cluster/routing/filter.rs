//! Worker filters: `"role=worker"`, a bare key (`"gpu"`), or several
//! conditions at once (`"role=worker,zone=eu"`, all must hold). Pure. The
//! one tag-filter language of the crate: worker selection and
//! [`NodeInfo::has_tag`](crate::cluster::NodeInfo::has_tag) (so
//! `NodeRegistry::nodes_with_tag`) both read filters here.

use crate::cluster::Tags;
use crate::RpcError;

/// Where the ASCII byte `byte` first occurs in `text`: a plain byte loop,
/// several times cheaper than `str::split_once` on a filter's few bytes
/// (filters are read on every routed call).
fn find(text: &str, byte: u8) -> Option<usize> {
    text.bytes().position(|b| b == byte)
}

/// `str::trim`, without its Unicode checks when `text` starts and ends
/// with a printable ASCII character (so has nothing to trim).
fn trim(text: &str) -> &str {
    match (text.as_bytes().first(), text.as_bytes().last()) {
        (Some(first), Some(last)) if first.is_ascii_graphic() && last.is_ascii_graphic() => text,
        _ => text.trim(),
    }
}

/// One condition of a filter, borrowed from the filter's text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Condition<'a> {
    /// The tag is present, any value.
    Has(&'a str),
    /// The tag has exactly this value.
    Equals(&'a str, &'a str),
}

impl<'a> Condition<'a> {
    /// Reads one comma-separated part of a filter; the reason it is
    /// malformed when it is empty or has an empty key.
    fn read(part: &'a str) -> Result<Self, &'static str> {
        let part = trim(part);
        if part.is_empty() {
            return Err("empty condition");
        }
        let condition = match find(part, b'=') {
            Some(at) => Condition::Equals(trim(&part[..at]), trim(&part[at + 1..])),
            None => Condition::Has(part),
        };
        match condition {
            Condition::Has(k) | Condition::Equals(k, _) if k.is_empty() => Err("empty tag key"),
            condition => Ok(condition),
        }
    }

    fn holds(self, tags: &Tags) -> bool {
        match self {
            Condition::Has(k) => tags.contains_key(k),
            Condition::Equals(k, v) => tags.get(k).is_some_and(|have| have == v),
        }
    }
}

/// A worker filter, checked once when parsed: every condition must hold.
/// It keeps its first condition as read and the rest of the text, read
/// again at each match, so a call's filter costs no allocation on the
/// call path and the common filter of one condition is read once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct WorkerFilter<'a> {
    /// The first condition; `None` (no filter) matches every worker.
    first: Option<Condition<'a>>,
    /// The validated text after the first comma, if any.
    rest: Option<&'a str>,
}

/// Longest filter accepted, in bytes (a filter names at most
/// [`MAX_TAGS`](crate::cluster::MAX_TAGS) tags of
/// [`MAX_TAG_LEN`](crate::cluster::MAX_TAG_LEN) bytes each).
const MAX_FILTER_LEN: usize = crate::cluster::MAX_TAGS * (2 * crate::cluster::MAX_TAG_LEN + 2);

impl<'a> WorkerFilter<'a> {
    /// Parses `"k=v,k2,k3=v3"`. Whitespace around keys and values is
    /// ignored; `None` (no filter) matches every worker.
    ///
    /// # Errors
    /// [`RpcError::InvalidFilter`] for an empty condition (`"a=b,,c"`), an
    /// empty key (`"=x"`), or a filter longer than any tag set could match.
    pub(crate) fn parse(filter: Option<&'a str>) -> Result<Self, RpcError> {
        let Some(text) = filter else {
            return Ok(Self::default());
        };
        let invalid = |why: &str| RpcError::InvalidFilter {
            filter: text.chars().take(64).collect(),
            reason: why.to_owned(),
        };
        if text.len() > MAX_FILTER_LEN {
            return Err(invalid("longer than any tag set"));
        }
        let (first, rest) = match find(text, b',') {
            Some(at) => (&text[..at], Some(&text[at + 1..])),
            None => (text, None),
        };
        let first = Condition::read(first).map_err(invalid)?;
        for part in rest.into_iter().flat_map(|rest| rest.split(',')) {
            Condition::read(part).map_err(invalid)?;
        }
        Ok(Self {
            first: Some(first),
            rest,
        })
    }

    /// Whether `tags` satisfy every condition.
    pub(crate) fn matches(&self, tags: &Tags) -> bool {
        self.first.is_none_or(|first| first.holds(tags))
            && self.rest.is_none_or(|rest| {
                rest.split(',')
                    .all(|part| Condition::read(part).is_ok_and(|c| c.holds(tags)))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(pairs: &[(&str, &str)]) -> Tags {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn key_value_bare_key_and_conjunctions() {
        let eu_gpu = tags(&[("role", "worker"), ("zone", "eu"), ("gpu", "true")]);
        let us = tags(&[("role", "worker"), ("zone", "us")]);
        let f = |s| WorkerFilter::parse(Some(s)).unwrap();
        assert!(f("role=worker").matches(&eu_gpu) && f("role=worker").matches(&us));
        assert!(f("gpu").matches(&eu_gpu) && !f("gpu").matches(&us));
        assert!(f("gpu=true").matches(&eu_gpu) && !f("gpu=false").matches(&eu_gpu));
        assert!(f("role=worker,zone=eu").matches(&eu_gpu));
        assert!(!f("role=worker,zone=eu").matches(&us));
        assert!(f(" role = worker , gpu ").matches(&eu_gpu));
        assert!(f("role=").matches(&tags(&[("role", "")])));
        assert!(!f("role=").matches(&us));
        assert!(WorkerFilter::parse(None).unwrap().matches(&Tags::new()));
        // Unicode whitespace is trimmed too.
        assert!(f("\u{3000}gpu\u{a0}").matches(&eu_gpu));
        assert!(f("zone=\u{2003}eu\t").matches(&eu_gpu));
    }

    #[test]
    fn trim_is_str_trim() {
        for text in [
            "",
            " ",
            "a",
            " a",
            "a ",
            "\ta\n",
            "a b",
            "\u{a0}a",
            "a\u{3000}",
            "é",
            " é ",
            "~x~",
        ] {
            assert_eq!(trim(text), text.trim(), "{text:?}");
        }
    }

    #[test]
    fn membership_tag_queries_read_the_same_language() {
        use crate::cluster::{NodeId, NodeInfo, NodeStatus};
        let node = NodeInfo {
            id: NodeId::new("127.0.0.1:1".parse::<std::net::SocketAddr>().unwrap(), 1),
            status: NodeStatus::Alive,
            tags: tags(&[("role", "worker"), ("zone", "eu")]),
            phi: 0.0,
        };
        assert!(node.has_tag("role=worker,zone=eu"), "a conjunction");
        assert!(!node.has_tag("role=worker,zone=us"));
        assert!(node.has_tag("role") && node.has_tag(" zone = eu "));
        for malformed in ["", "role=worker,,", "=eu"] {
            assert!(!node.has_tag(malformed), "{malformed:?}");
        }
        // Read before as one key and the rest as its value.
        let odd = NodeInfo {
            tags: tags(&[("role", "worker,zone=eu")]),
            ..node
        };
        assert!(!odd.has_tag("role=worker,zone=eu"));
    }

    #[test]
    fn malformed_filters_are_typed_errors() {
        for bad in ["", ",", "a=b,,c", "=x", " =x", "a,"] {
            assert!(
                matches!(
                    WorkerFilter::parse(Some(bad)),
                    Err(RpcError::InvalidFilter { .. })
                ),
                "{bad:?}"
            );
        }
        let huge = "k,".repeat(MAX_FILTER_LEN);
        assert!(matches!(
            WorkerFilter::parse(Some(&huge)),
            Err(RpcError::InvalidFilter { .. })
        ));
    }
}
