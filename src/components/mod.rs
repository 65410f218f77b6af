//! View pieces shared by several pages.
pub mod form_error;
pub mod live;
pub mod nav;
pub mod sparkline;
pub mod status;
pub mod time;
pub mod toast;
