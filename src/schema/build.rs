//! The merged SDL → an async-graphql dynamic schema, which validates
//! documents and answers introspection. It resolves no field of ours: the
//! engine (`execute::planned`) runs every operation, so an object field's
//! resolver here is never called (it would answer an error).

use async_graphql::dynamic::{
    Enum, EnumItem, Field, FieldFuture, FieldValue, InputObject, InputValue, Interface,
    InterfaceField, Object, Scalar, Schema, Subscription, SubscriptionField,
    SubscriptionFieldFuture, TypeRef, Union,
};
use async_graphql::parser::types::{
    BaseType, ConstDirective, FieldDefinition, InputValueDefinition, Type, TypeKind,
};
use async_graphql::parser::Positioned;

use super::binding::Bindings;
use super::sdl::SchemaModel;
use crate::config::{Diagnostic, Diagnostics};
use crate::execute::ValidationCodes;

pub struct SchemaOptions {
    pub introspection: bool,
}

pub fn build(
    model: &SchemaModel,
    bindings: &Bindings,
    options: &SchemaOptions,
) -> Result<Schema, Diagnostics> {
    // The subscription type is registered only when some field of it is
    // bound: an empty object type is not a valid schema.
    let subscription = model.subscription_type.as_deref().filter(|name| {
        bindings
            .keys()
            .any(|key| key.split_once('.').is_some_and(|(ty, _)| ty == *name))
    });
    let mut builder = Schema::build(
        &model.query_type,
        model.mutation_type.as_deref(),
        subscription,
    )
    .extension(ValidationCodes);
    if !options.introspection {
        builder = builder.disable_introspection();
    }
    for (name, ty) in &model.types {
        let description = ty.description.as_ref().map(|d| d.node.clone());
        builder = match &ty.kind {
            TypeKind::Scalar => builder.register(with_description(
                Scalar::new(name),
                description,
                Scalar::description,
            )),
            TypeKind::Object(object) if Some(name.as_str()) == subscription => {
                let mut built = with_description(
                    Subscription::new(name),
                    description,
                    Subscription::description,
                );
                for field in &object.fields {
                    let key = format!("{name}.{}", field.node.name.node);
                    if bindings.get(&key).is_some() {
                        built = built.field(subscription_field(&field.node));
                    }
                }
                builder.register(built)
            }
            TypeKind::Object(object) => {
                let mut built =
                    with_description(Object::new(name), description, Object::description);
                for interface in &object.implements {
                    built = built.implement(interface.node.as_str());
                }
                for field in &object.fields {
                    let key = format!("{name}.{}", field.node.name.node);
                    if bindings.get(&key).is_none() {
                        continue;
                    }
                    built = built.field(object_field(&field.node));
                }
                builder.register(built)
            }
            TypeKind::Interface(interface) => {
                let mut built =
                    with_description(Interface::new(name), description, Interface::description);
                for implemented in &interface.implements {
                    built = built.implement(implemented.node.as_str());
                }
                for field in &interface.fields {
                    built = built.field(interface_field(&field.node));
                }
                builder.register(built)
            }
            TypeKind::Union(union) => {
                let mut built = with_description(Union::new(name), description, Union::description);
                for member in &union.members {
                    built = built.possible_type(member.node.as_str());
                }
                builder.register(built)
            }
            TypeKind::Enum(e) => {
                let mut built = with_description(Enum::new(name), description, Enum::description);
                for value in &e.values {
                    let mut item = EnumItem::new(value.node.value.node.as_str());
                    if let Some(d) = &value.node.description {
                        item = item.description(d.node.clone());
                    }
                    if let Some(reason) = deprecation(&value.node.directives) {
                        item = item.deprecation(Some(&reason));
                    }
                    built = built.item(item);
                }
                builder.register(built)
            }
            TypeKind::InputObject(input) => {
                let mut built = with_description(
                    InputObject::new(name),
                    description,
                    InputObject::description,
                );
                for field in &input.fields {
                    built = built.field(input_value(&field.node));
                }
                builder.register(built)
            }
        };
    }
    builder.finish().map_err(|err| {
        Diagnostics(vec![Diagnostic {
            location: None,
            file: None,
            message: format!("invalid schema: {}", err.0),
        }])
    })
}

fn with_description<T>(item: T, description: Option<String>, set: fn(T, String) -> T) -> T {
    match description {
        Some(description) => set(item, description),
        None => item,
    }
}

fn object_field(field: &FieldDefinition) -> Field {
    let mut built = Field::new(field.name.node.as_str(), type_ref(&field.ty.node), |_| {
        FieldFuture::new(async {
            Err::<Option<FieldValue<'_>>, _>(async_graphql::Error::new(
                "fields are resolved by the engine, not by the schema",
            ))
        })
    });
    if let Some(d) = &field.description {
        built = built.description(d.node.clone());
    }
    // async-graphql marks a field deprecated whenever `deprecation` is
    // called, even with `None`: only call it for `@deprecated` fields.
    if let Some(reason) = deprecation(&field.directives) {
        built = built.deprecation(Some(&reason));
    }
    for arg in &field.arguments {
        built = built.argument(input_value(&arg.node));
    }
    built
}

/// A subscription field for validation and introspection; events are
/// delivered by `subscribe/`, never by this resolver.
fn subscription_field(field: &FieldDefinition) -> SubscriptionField {
    let mut built =
        SubscriptionField::new(field.name.node.as_str(), type_ref(&field.ty.node), |_| {
            SubscriptionFieldFuture::new(async {
                Err::<futures::stream::Empty<async_graphql::Result<FieldValue<'_>>>, _>(
                    async_graphql::Error::new(
                        "subscriptions are served by the gateway's transports",
                    ),
                )
            })
        });
    if let Some(d) = &field.description {
        built = built.description(d.node.clone());
    }
    if let Some(reason) = deprecation(&field.directives) {
        built = built.deprecation(Some(&reason));
    }
    for arg in &field.arguments {
        built = built.argument(input_value(&arg.node));
    }
    built
}

fn interface_field(field: &FieldDefinition) -> InterfaceField {
    let mut built = InterfaceField::new(field.name.node.as_str(), type_ref(&field.ty.node));
    if let Some(d) = &field.description {
        built = built.description(d.node.clone());
    }
    if let Some(reason) = deprecation(&field.directives) {
        built = built.deprecation(Some(&reason));
    }
    for arg in &field.arguments {
        built = built.argument(input_value(&arg.node));
    }
    built
}

fn input_value(value: &InputValueDefinition) -> InputValue {
    let mut built = InputValue::new(value.name.node.as_str(), type_ref(&value.ty.node));
    if let Some(d) = &value.description {
        built = built.description(d.node.clone());
    }
    if let Some(default) = &value.default_value {
        built = built.default_value(default.node.clone());
    }
    built
}

fn type_ref(ty: &Type) -> TypeRef {
    let inner = match &ty.base {
        BaseType::Named(name) => TypeRef::named(name.as_str()),
        BaseType::List(inner) => TypeRef::List(Box::new(type_ref(inner))),
    };
    if ty.nullable {
        inner
    } else {
        TypeRef::NonNull(Box::new(inner))
    }
}

/// The reason of a `@deprecated` directive, when present.
fn deprecation(directives: &[Positioned<ConstDirective>]) -> Option<String> {
    let directive = directives
        .iter()
        .find(|d| d.node.name.node == "deprecated")?;
    Some(
        directive
            .node
            .get_argument("reason")
            .and_then(|r| match &r.node {
                async_graphql::Value::String(reason) => Some(reason.clone()),
                _ => None,
            })
            .unwrap_or_else(|| "No longer supported".to_owned()),
    )
}
