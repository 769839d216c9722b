//! Talking to MISP: the requests the enricher sends and the responses it
//! accepts, with no I/O of its own.
//!
//! The searches follow what operators learned the hard way (the README
//! explains each lesson): attributes scope so the matching
//! attribute and its timestamp are known, no `last` (it filters on event
//! publication, so old feed events vanish), no `category` (addresses live in
//! "Network activity", "External analysis", "Payload delivery" alike), and
//! always a JSON content type (anything else makes MISP ignore the filters).

pub mod request;
pub mod response;

pub use request::{HttpRequest, PAGE_LIMIT};
pub use response::{Attribute, AttributePage, EventContext, ResponseError};
