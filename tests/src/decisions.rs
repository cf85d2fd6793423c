//! A capture with decisions (`ovsnoop --capture`'s request) whose client
//! does not read: what overlayd does with a reader that falls behind. The
//! client starts the capture on the control socket and then leaves the
//! frames unread; [`StalledCapture::finish`] stops it and reads what was
//! kept, up to overlayd's end line with the totals.

use overlay_api::capture::CaptureMsg;
use overlay_api::proto::{Reply, Request};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// A capture nobody reads yet.
pub struct StalledCapture {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

/// What a stalled capture got in the end.
#[derive(Debug, Default)]
pub struct CaptureTotals {
    /// Frame lines read.
    pub frames_read: u64,
    /// The highest `lost` line seen before the end.
    pub lost_told: u64,
    /// overlayd's totals at the end: frames sent, frames lost.
    pub end: Option<(u64, u64)>,
}

impl StalledCapture {
    /// Starts a capture of `overlays` (all when empty) on the overlayd of
    /// `run_dir` and reads nothing more.
    pub fn start(run_dir: &Path, overlays: &[&str]) -> StalledCapture {
        let path = run_dir.join(overlay_api::OVERLAYD_SOCKET);
        let s = UnixStream::connect(&path)
            .unwrap_or_else(|e| panic!("cannot connect to {}: {e}", path.display()));
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut writer = s.try_clone().unwrap();
        let req = Request::CaptureStart {
            overlays: overlays.iter().map(|o| o.to_string()).collect(),
            drops_only: false,
            snaplen: None,
        };
        let mut line = serde_json::to_vec(&req).unwrap();
        line.push(b'\n');
        writer.write_all(&line).unwrap();
        let mut reader = BufReader::new(s);
        let mut answer = String::new();
        reader.read_line(&mut answer).unwrap();
        match serde_json::from_str::<Reply>(&answer) {
            Ok(Reply::Capturing { .. }) => {}
            other => panic!("capture-start: {other:?} ({answer})"),
        }
        StalledCapture { reader, writer }
    }

    /// Stops the capture and reads everything up to the end line.
    pub fn finish(mut self) -> CaptureTotals {
        let mut line = serde_json::to_vec(&Request::CaptureStop).unwrap();
        line.push(b'\n');
        self.writer.write_all(&line).unwrap();
        let mut t = CaptureTotals::default();
        let mut buf = String::new();
        loop {
            buf.clear();
            match self.reader.read_line(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            match serde_json::from_str::<CaptureMsg>(&buf) {
                Ok(CaptureMsg::Frame(_)) => t.frames_read += 1,
                Ok(CaptureMsg::Lost { total }) => t.lost_told = t.lost_told.max(total),
                Ok(CaptureMsg::End { frames, lost }) => {
                    t.end = Some((frames, lost));
                    break;
                }
                Err(e) => panic!("not a capture line ({e}): {buf}"),
            }
        }
        t
    }
}
