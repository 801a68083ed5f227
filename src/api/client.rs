//! Placeholder: filled by the API work (see `api` module docs).
