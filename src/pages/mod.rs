//! One module per page.
pub mod events;
pub mod functions;
pub mod home;
pub mod not_found;
pub mod run;
pub mod runs;
pub mod sign_in;
pub mod sign_up;
