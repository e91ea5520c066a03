//! A tokio codec for [`bramble_proto::Frame`]s: the length prefix is checked against the
//! limit before any buffer grows.

use bramble_proto::{Frame, FrameError, MAX_FRAME_LEN};
use bytes::BytesMut;
use tokio_util::codec::{Decoder, Encoder};

/// Frames in, frames out.
#[derive(Debug, Clone, Copy)]
pub struct FrameCodec {
    max_len: usize,
}

impl Default for FrameCodec {
    fn default() -> Self {
        FrameCodec {
            max_len: MAX_FRAME_LEN,
        }
    }
}

impl FrameCodec {
    /// A codec refusing frames longer than `max_len` (capped at [`MAX_FRAME_LEN`]).
    pub fn with_max_len(max_len: usize) -> FrameCodec {
        FrameCodec {
            max_len: max_len.min(MAX_FRAME_LEN),
        }
    }
}

/// A frame that could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The bytes are not a frame.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The connection failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl Decoder for FrameCodec {
    type Item = Frame;
    type Error = CodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, CodecError> {
        Ok(Frame::decode(src, self.max_len)?)
    }
}

impl Encoder<Frame> for FrameCodec {
    type Error = CodecError;

    fn encode(&mut self, item: Frame, dst: &mut BytesMut) -> Result<(), CodecError> {
        Ok(item.encode(dst)?)
    }
}

impl Encoder<&Frame> for FrameCodec {
    type Error = CodecError;

    fn encode(&mut self, item: &Frame, dst: &mut BytesMut) -> Result<(), CodecError> {
        Ok(item.encode(dst)?)
    }
}
