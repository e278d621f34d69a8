//! Property tests of the media decoders.
