//! Reading one-JSON-object-per-line messages with a bound on line length,
//! so that a peer sending an endless line costs a bounded buffer, not all of
//! varpd's memory.

use tokio::io::{AsyncBufRead, AsyncBufReadExt};

/// One read from a line-oriented stream.
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    /// A line, without its newline (a last line without one counts too).
    Text(Vec<u8>),
    /// A line longer than the limit, skipped; the length read before the
    /// newline.
    TooLong(usize),
    /// End of stream.
    Eof,
}

/// Reads lines of at most `max` bytes from `inner`.
pub struct LineReader<R> {
    inner: R,
    max: usize,
}

impl<R: AsyncBufRead + Unpin> LineReader<R> {
    /// Wraps a buffered reader.
    pub fn new(inner: R, max: usize) -> Self {
        LineReader { inner, max }
    }

    /// The next line. A too-long line is consumed up to its newline and
    /// reported as [`Line::TooLong`] without being kept in memory.
    pub async fn next(&mut self) -> std::io::Result<Line> {
        let mut buf = Vec::new();
        let mut skipped: Option<usize> = None;
        loop {
            let avail = self.inner.fill_buf().await?;
            if avail.is_empty() {
                return Ok(match skipped {
                    Some(n) => Line::TooLong(n),
                    None if buf.is_empty() => Line::Eof,
                    None => Line::Text(buf),
                });
            }
            let (chunk, used, done) = match avail.iter().position(|&b| b == b'\n') {
                Some(i) => (&avail[..i], i + 1, true),
                None => (avail, avail.len(), false),
            };
            match &mut skipped {
                Some(n) => *n += chunk.len(),
                None if buf.len() + chunk.len() > self.max => {
                    skipped = Some(buf.len() + chunk.len());
                    buf = Vec::new();
                }
                None => buf.extend_from_slice(chunk),
            }
            self.inner.consume(used);
            if done {
                return Ok(match skipped {
                    Some(n) => Line::TooLong(n),
                    None => Line::Text(buf),
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::BufReader;

    #[tokio::test]
    async fn splits_and_bounds_lines() {
        let input: &[u8] = b"{\"a\":1}\n0123456789abcdef\nok\n\nlast";
        // A tiny internal buffer, so lines span several fills.
        let mut r = LineReader::new(BufReader::with_capacity(3, input), 10);
        assert_eq!(r.next().await.unwrap(), Line::Text(b"{\"a\":1}".to_vec()));
        assert_eq!(r.next().await.unwrap(), Line::TooLong(16));
        assert_eq!(r.next().await.unwrap(), Line::Text(b"ok".to_vec()));
        assert_eq!(r.next().await.unwrap(), Line::Text(vec![]));
        assert_eq!(r.next().await.unwrap(), Line::Text(b"last".to_vec()));
        assert_eq!(r.next().await.unwrap(), Line::Eof);
        assert_eq!(r.next().await.unwrap(), Line::Eof);
    }
}
