//! The sync engine: turns changes into pack calls and pack actions into
//! writes. (Intake, journal, dispatcher, shadow and outbox arrive with the
//! engine issue; what is here is shared by all of them.)

pub mod apply;
pub mod normalize;
pub mod ownership;
pub mod poller;
pub mod processor;
