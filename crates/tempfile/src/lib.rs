//! seccs encrypted and authenticated temporary files with the tempfile crate's surface.
