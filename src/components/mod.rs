//! View pieces shared by several pages.
pub mod charts;
pub mod form_error;
pub mod live;
pub mod nav;
pub mod status;
pub mod time;
pub mod toast;
