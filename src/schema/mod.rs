//! SDL files → merged model → field bindings → async-graphql dynamic schema.

pub mod binding;
pub mod build;
pub mod print;
pub mod reach;
pub mod sdl;

pub use binding::{Bindings, FieldBinding};
pub use sdl::SchemaModel;
