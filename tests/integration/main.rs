mod conformance;
mod prism;
