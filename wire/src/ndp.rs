//! Proxy NDP (to be written).
