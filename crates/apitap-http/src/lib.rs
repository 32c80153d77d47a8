//! apitap-http
