//! Providers: the Cloud API, and the built-in simulator, behind one small trait.

pub mod cloud_api;
