//! apitap-sink
