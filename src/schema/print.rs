//! `conflux print-schema`: the merged schema as served, with the
//! declarations of Conflux's own directives and every place they are used.

use std::fmt::Write;

use async_graphql::parser::types::{
    ConstDirective, DirectiveDefinition, InputValueDefinition, TypeDefinition, TypeKind,
};
use async_graphql::parser::Positioned;

use super::sdl::{SchemaModel, CONFLUX_DIRECTIVES};

pub fn print(model: &SchemaModel) -> String {
    let mut out = String::new();
    out.push_str(CONFLUX_DIRECTIVES);
    for directive in &model.directives {
        out.push('\n');
        print_directive_definition(&mut out, directive);
    }
    if model.query_type != "Query"
        || model
            .mutation_type
            .as_deref()
            .is_some_and(|m| m != "Mutation")
        || model
            .subscription_type
            .as_deref()
            .is_some_and(|s| s != "Subscription")
    {
        out.push_str("\nschema {\n");
        let _ = writeln!(out, "  query: {}", model.query_type);
        if let Some(mutation) = &model.mutation_type {
            let _ = writeln!(out, "  mutation: {mutation}");
        }
        if let Some(subscription) = &model.subscription_type {
            let _ = writeln!(out, "  subscription: {subscription}");
        }
        out.push_str("}\n");
    }
    for ty in model.types.values() {
        out.push('\n');
        print_type(&mut out, ty);
    }
    out
}

fn print_description(out: &mut String, description: Option<&str>, indent: &str) {
    if let Some(description) = description {
        let _ = writeln!(out, "{indent}\"\"\"");
        for line in description.lines() {
            let _ = writeln!(out, "{indent}{}", line.replace("\"\"\"", "\\\"\"\""));
        }
        let _ = writeln!(out, "{indent}\"\"\"");
    }
}

fn directives(list: &[Positioned<ConstDirective>]) -> String {
    let mut out = String::new();
    for directive in list {
        let _ = write!(out, " @{}", directive.node.name.node);
        if !directive.node.arguments.is_empty() {
            let args: Vec<String> = directive
                .node
                .arguments
                .iter()
                .map(|(name, value)| format!("{}: {}", name.node, value.node))
                .collect();
            let _ = write!(out, "({})", args.join(", "));
        }
    }
    out
}

fn input_value(value: &InputValueDefinition) -> String {
    let mut out = format!("{}: {}", value.name.node, value.ty.node);
    if let Some(default) = &value.default_value {
        let _ = write!(out, " = {}", default.node);
    }
    out.push_str(&directives(&value.directives));
    out
}

fn arguments(args: &[Positioned<InputValueDefinition>]) -> String {
    if args.is_empty() {
        return String::new();
    }
    let list: Vec<String> = args.iter().map(|a| input_value(&a.node)).collect();
    format!("({})", list.join(", "))
}

fn print_directive_definition(out: &mut String, directive: &DirectiveDefinition) {
    print_description(
        out,
        directive.description.as_ref().map(|d| d.node.as_str()),
        "",
    );
    let locations: Vec<String> = directive
        .locations
        .iter()
        .map(|l| format!("{:?}", l.node))
        .collect();
    let _ = writeln!(
        out,
        "directive @{}{}{} on {}",
        directive.name.node,
        arguments(&directive.arguments),
        if directive.is_repeatable {
            " repeatable"
        } else {
            ""
        },
        screaming(&locations).join(" | ")
    );
}

/// `FieldDefinition` (Debug of the parser's enum) → `FIELD_DEFINITION`.
fn screaming(names: &[String]) -> Vec<String> {
    names
        .iter()
        .map(|name| {
            let mut out = String::new();
            for (i, c) in name.chars().enumerate() {
                if c.is_uppercase() && i > 0 {
                    out.push('_');
                }
                out.push(c.to_ascii_uppercase());
            }
            out
        })
        .collect()
}

fn print_type(out: &mut String, ty: &TypeDefinition) {
    print_description(out, ty.description.as_ref().map(|d| d.node.as_str()), "");
    let name = &ty.name.node;
    let directives_text = directives(&ty.directives);
    match &ty.kind {
        TypeKind::Scalar => {
            let _ = writeln!(out, "scalar {name}{directives_text}");
        }
        TypeKind::Object(object) => {
            let implements: Vec<&str> = object.implements.iter().map(|i| i.node.as_str()).collect();
            print_fields(
                out,
                "type",
                name,
                &implements,
                &directives_text,
                &object.fields,
            );
        }
        TypeKind::Interface(interface) => {
            let implements: Vec<&str> = interface
                .implements
                .iter()
                .map(|i| i.node.as_str())
                .collect();
            print_fields(
                out,
                "interface",
                name,
                &implements,
                &directives_text,
                &interface.fields,
            );
        }
        TypeKind::Union(union) => {
            let members: Vec<&str> = union.members.iter().map(|m| m.node.as_str()).collect();
            let _ = writeln!(
                out,
                "union {name}{directives_text} = {}",
                members.join(" | ")
            );
        }
        TypeKind::Enum(e) => {
            let _ = writeln!(out, "enum {name}{directives_text} {{");
            for value in &e.values {
                print_description(
                    out,
                    value.node.description.as_ref().map(|d| d.node.as_str()),
                    "  ",
                );
                let _ = writeln!(
                    out,
                    "  {}{}",
                    value.node.value.node,
                    directives(&value.node.directives)
                );
            }
            out.push_str("}\n");
        }
        TypeKind::InputObject(input) => {
            let _ = writeln!(out, "input {name}{directives_text} {{");
            for field in &input.fields {
                print_description(
                    out,
                    field.node.description.as_ref().map(|d| d.node.as_str()),
                    "  ",
                );
                let _ = writeln!(out, "  {}", input_value(&field.node));
            }
            out.push_str("}\n");
        }
    }
}

fn print_fields(
    out: &mut String,
    keyword: &str,
    name: &str,
    implements: &[&str],
    directives_text: &str,
    fields: &[Positioned<async_graphql::parser::types::FieldDefinition>],
) {
    let implements = if implements.is_empty() {
        String::new()
    } else {
        format!(" implements {}", implements.join(" & "))
    };
    let _ = writeln!(out, "{keyword} {name}{implements}{directives_text} {{");
    for field in fields {
        let field = &field.node;
        print_description(
            out,
            field.description.as_ref().map(|d| d.node.as_str()),
            "  ",
        );
        let _ = writeln!(
            out,
            "  {}{}: {}{}",
            field.name.node,
            arguments(&field.arguments),
            field.ty.node,
            directives(&field.directives)
        );
    }
    out.push_str("}\n");
}
