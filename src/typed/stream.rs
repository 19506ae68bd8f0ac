//! [`Streaming`]: the stream type of typed services.

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::Stream;

/// A boxed, `Send` stream of `T`: a request stream a handler receives
/// (`Streaming<Req>`), or a response stream (`Streaming<Result<T, E>>`)
/// a handler returns and a client reads.
///
/// ```
/// use futures::StreamExt;
/// use rpcnet::typed::Streaming;
///
/// # futures::executor::block_on(async {
/// let numbers: Streaming<Result<u32, String>> = (1..=3).map(Ok).collect();
/// let doubled = Streaming::new(numbers.map(|n| n.map(|n| n * 2)));
/// assert_eq!(doubled.collect::<Vec<_>>().await, [Ok(2), Ok(4), Ok(6)]);
/// # });
/// ```
pub struct Streaming<T> {
    inner: Pin<Box<dyn Stream<Item = T> + Send + 'static>>,
}

impl<T> Streaming<T> {
    /// Boxes `stream`.
    pub fn new(stream: impl Stream<Item = T> + Send + 'static) -> Self {
        Self {
            inner: Box::pin(stream),
        }
    }

    /// A stream that ends at once.
    pub fn empty() -> Self
    where
        T: Send + 'static,
    {
        Self::new(futures::stream::empty())
    }
}

impl<T> Stream for Streaming<T> {
    type Item = T;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        self.inner.as_mut().poll_next(cx)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.inner.size_hint()
    }
}

/// The items, collected first and then streamed.
impl<T: Send + 'static> FromIterator<T> for Streaming<T> {
    fn from_iter<I: IntoIterator<Item = T>>(iter: I) -> Self {
        let items: Vec<T> = iter.into_iter().collect();
        Self::new(futures::stream::iter(items))
    }
}

impl<T> fmt::Debug for Streaming<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Streaming").finish_non_exhaustive()
    }
}
