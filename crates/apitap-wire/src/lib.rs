//! apitap-wire
