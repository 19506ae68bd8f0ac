//! Worker filters: `"role=worker"`, a bare key (`"gpu"`), or several
//! conditions at once (`"role=worker,zone=eu"`, all must hold). Pure.

use crate::cluster::Tags;
use crate::RpcError;

/// One condition of a filter.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Condition {
    /// The tag is present, any value.
    Has(String),
    /// The tag has exactly this value.
    Equals(String, String),
}

/// A parsed worker filter: every condition must hold.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct WorkerFilter {
    conditions: Vec<Condition>,
}

/// Longest filter accepted, in bytes (a filter names at most
/// [`MAX_TAGS`](crate::cluster::MAX_TAGS) tags of
/// [`MAX_TAG_LEN`](crate::cluster::MAX_TAG_LEN) bytes each).
const MAX_FILTER_LEN: usize =
    crate::cluster::MAX_TAGS * (2 * crate::cluster::MAX_TAG_LEN + 2);

impl WorkerFilter {
    /// Parses `"k=v,k2,k3=v3"`. Whitespace around keys and values is
    /// ignored; `None` (no filter) matches every worker.
    ///
    /// # Errors
    /// [`RpcError::InvalidFilter`] for an empty condition (`"a=b,,c"`), an
    /// empty key (`"=x"`), or a filter longer than any tag set could match.
    pub(crate) fn parse(filter: Option<&str>) -> Result<Self, RpcError> {
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
        let mut conditions = Vec::new();
        for part in text.split(',') {
            let part = part.trim();
            if part.is_empty() {
                return Err(invalid("empty condition"));
            }
            let condition = match part.split_once('=') {
                Some((k, v)) => Condition::Equals(k.trim().to_owned(), v.trim().to_owned()),
                None => Condition::Has(part.to_owned()),
            };
            let key = match &condition {
                Condition::Has(k) | Condition::Equals(k, _) => k,
            };
            if key.is_empty() {
                return Err(invalid("empty tag key"));
            }
            conditions.push(condition);
        }
        Ok(Self { conditions })
    }

    /// Whether `tags` satisfy every condition.
    pub(crate) fn matches(&self, tags: &Tags) -> bool {
        self.conditions.iter().all(|c| match c {
            Condition::Has(k) => tags.contains_key(k),
            Condition::Equals(k, v) => tags.get(k) == Some(v),
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
