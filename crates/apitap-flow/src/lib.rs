//! apitap-flow
