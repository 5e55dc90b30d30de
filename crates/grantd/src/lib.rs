//! grantd
