//! A Pratt parser (JSONata's binding powers) that also does JSONata's AST
//! post-processing: dotted expressions become paths, predicates attach to steps.

use crate::ast::{BinOp, Node, Path, Stage, Step};
use crate::error::{Error, Result};
use crate::lexer::{Tok, Token, tokenize};
use std::rc::Rc;

/// Deeper nesting than this is refused so that parsing cannot overflow the stack.
const MAX_NESTING: usize = 150;
/// The deepest syntax tree accepted: operator chains (`a & b & c ...`) nest to the
/// left without recursing in the parser, but evaluating and dropping them recurses.
const MAX_TREE_DEPTH: usize = 1000;

fn lbp(t: &Tok) -> u32 {
    match t {
        Tok::Op(o) => match *o {
            "." => 75,
            "[" | "(" | "@" | "#" => 80,
            "{" => 70,
            "*" | "/" | "%" => 60,
            "+" | "-" | "&" => 50,
            "=" | "<" | ">" | "!=" | "<=" | ">=" | "^" | "~>" | "?:" | "??" | "in" => 40,
            "and" => 30,
            "or" => 25,
            "?" | ".." => 20,
            ":=" => 10,
            _ => 0,
        },
        _ => 0,
    }
}

fn describe(t: &Tok) -> String {
    match t {
        Tok::Op(o) => format!("\"{o}\""),
        Tok::Str(s) => format!("string \"{s}\""),
        Tok::Num(n) => format!("number {n}"),
        Tok::Name(n) => format!("name \"{n}\""),
        Tok::Var(v) => format!("variable \"${v}\""),
        Tok::Regex(p, _) => format!("regex /{p}/"),
        Tok::Bool(b) => b.to_string(),
        Tok::Null => "null".into(),
        Tok::End => "end of expression".into(),
    }
}

struct Parser {
    src: String,
    toks: Vec<Token>,
    i: usize,
    depth: usize,
    tree: usize,
    uses_parent: bool,
}

/// Parses an expression; also says whether it uses the parent operator `%` (then
/// paths must track where each item came from).
pub fn parse(src: &str) -> Result<(Node, bool)> {
    let toks = tokenize(src)?;
    let mut p = Parser {
        src: src.to_string(),
        toks,
        i: 0,
        depth: 0,
        tree: 0,
        uses_parent: false,
    };
    let n = p.expression(0)?;
    let t = p.peek();
    if t.tok != Tok::End {
        return Err(Error::at(
            "S0201",
            t.pos,
            format!("Syntax error: unexpected {}", describe(&t.tok)),
        ));
    }
    Ok((n, p.uses_parent))
}

impl Parser {
    fn peek(&self) -> Token {
        self.toks[self.i.min(self.toks.len() - 1)].clone()
    }
    fn next(&mut self) -> Token {
        let t = self.peek();
        if self.i < self.toks.len() - 1 {
            self.i += 1;
        }
        t
    }
    fn is_op(&self, op: &str) -> bool {
        matches!(self.peek().tok, Tok::Op(o) if o == op)
    }
    fn expect(&mut self, op: &str) -> Result<()> {
        let t = self.next();
        match t.tok {
            Tok::Op(o) if o == op => Ok(()),
            Tok::End => Err(Error::at(
                "S0203",
                t.pos,
                format!("Expected \"{op}\" before end of expression"),
            )),
            other => Err(Error::at(
                "S0202",
                t.pos,
                format!("Expected \"{op}\", got {}", describe(&other)),
            )),
        }
    }

    fn expression(&mut self, rbp: u32) -> Result<Node> {
        self.depth += 1;
        if self.depth > MAX_NESTING {
            let pos = self.peek().pos;
            return Err(Error::at(
                "U1001",
                pos,
                "The expression is nested too deeply",
            ));
        }
        let tree = self.tree;
        self.tree += 1;
        let t = self.next();
        let mut left = self.nud(t)?;
        while rbp < lbp(&self.peek().tok) {
            let t = self.next();
            self.tree += 1;
            if self.tree > MAX_TREE_DEPTH {
                return Err(Error::at(
                    "U1001",
                    t.pos,
                    "The expression is nested too deeply",
                ));
            }
            left = self.led(t, left)?;
        }
        self.depth -= 1;
        self.tree = tree;
        Ok(left)
    }

    fn list<T>(
        &mut self,
        close: &str,
        mut item: impl FnMut(&mut Self) -> Result<T>,
    ) -> Result<Vec<T>> {
        let mut out = Vec::new();
        if self.is_op(close) {
            self.next();
            return Ok(out);
        }
        loop {
            out.push(item(self)?);
            if self.is_op(",") {
                self.next();
                continue;
            }
            self.expect(close)?;
            return Ok(out);
        }
    }

    fn pairs(&mut self) -> Result<Vec<(Node, Node)>> {
        self.list("}", |p| {
            let k = p.expression(0)?;
            p.expect(":")?;
            let v = p.expression(0)?;
            Ok((k, v))
        })
    }

    fn nud(&mut self, t: Token) -> Result<Node> {
        let pos = t.pos;
        Ok(match t.tok {
            Tok::Num(n) => Node::Num(n),
            Tok::Str(s) => Node::Str(Rc::from(s)),
            Tok::Bool(b) => Node::Bool(b),
            Tok::Null => Node::Null,
            Tok::Var(v) => Node::Var(v, pos),
            Tok::Regex(p, flags) => {
                let mut b = regex::RegexBuilder::new(&p);
                for f in flags.chars() {
                    match f {
                        'i' => {
                            b.case_insensitive(true);
                        }
                        'm' => {
                            b.multi_line(true);
                        }
                        's' => {
                            b.dot_matches_new_line(true);
                        }
                        // JSONata always matches globally.
                        'g' => {}
                        _ => {
                            return Err(Error::at(
                                "S0303",
                                pos,
                                format!("Unsupported regular expression flag: {f}"),
                            ));
                        }
                    }
                }
                let re = b.size_limit(1 << 20).build().map_err(|e| {
                    Error::at("S0303", pos, format!("Invalid regular expression: {e}"))
                })?;
                Node::Regex(Rc::new(re))
            }
            Tok::Name(n) if (n == "function" || n == "λ") && self.is_op("(") => {
                self.next();
                let params = self.list(")", |p| {
                    let t = p.next();
                    match t.tok {
                        Tok::Var(v) => Ok(v),
                        other => Err(Error::at(
                            "S0208",
                            t.pos,
                            format!(
                                "Parameter {} of function definition must be a variable name (start with $)",
                                describe(&other)
                            ),
                        )),
                    }
                })?;
                // A signature `<...>`: read from the source text, as its symbols do not
                // lex as JSONata.
                let mut sig = None;
                if self.is_op("<") {
                    let open = self.peek().pos;
                    let mut depth = 0;
                    loop {
                        let t = self.next();
                        match t.tok {
                            Tok::Op("<") => depth += 1,
                            Tok::Op(">") => {
                                depth -= 1;
                                if depth == 0 {
                                    let text = self.src.get(open + 1..t.pos).unwrap_or("");
                                    sig = Some(Rc::new(crate::signature::Signature::parse(
                                        text, open,
                                    )?));
                                    break;
                                }
                            }
                            Tok::End => {
                                return Err(Error::at(
                                    "S0401",
                                    t.pos,
                                    "Function signature is not terminated by '>'",
                                ));
                            }
                            _ => {}
                        }
                    }
                }
                self.expect("{")?;
                let body = if self.is_op("}") {
                    Node::Block(Vec::new())
                } else {
                    self.expression(0)?
                };
                self.expect("}")?;
                Node::Lambda(Rc::new(params), Rc::new(body), sig)
            }
            Tok::Name(n) => Node::Path(Box::new(Path {
                steps: vec![Step::new(Node::Name(Rc::from(n)))],
                keep_singleton: false,
                group: None,
            })),
            Tok::Op(o) => match o {
                "and" | "or" | "in" => Node::Path(Box::new(Path {
                    steps: vec![Step::new(Node::Name(Rc::from(o)))],
                    keep_singleton: false,
                    group: None,
                })),
                "-" => {
                    let e = self.expression(70)?;
                    match e {
                        Node::Num(n) => Node::Num(-n),
                        e => Node::Neg(Box::new(e), pos),
                    }
                }
                "*" => Node::Wildcard,
                "**" => Node::Descendant,
                "?" => Node::Placeholder,
                "(" => {
                    let mut items = Vec::new();
                    loop {
                        if self.is_op(")") {
                            self.next();
                            break;
                        }
                        items.push(self.expression(0)?);
                        if self.is_op(";") {
                            self.next();
                            continue;
                        }
                        self.expect(")")?;
                        break;
                    }
                    Node::Block(items)
                }
                "[" => Node::Array(self.list("]", |p| p.expression(0))?, false),
                "{" => Node::Object(self.pairs()?, pos),
                "|" => {
                    let pattern = self.expression(0)?;
                    self.expect("|")?;
                    let update = self.expression(0)?;
                    let delete = if self.is_op(",") {
                        self.next();
                        Some(self.expression(0)?)
                    } else {
                        None
                    };
                    self.expect("|")?;
                    Node::Transform(Rc::new(crate::ast::Transform {
                        pattern,
                        update,
                        delete,
                        pos,
                    }))
                }
                "%" => {
                    self.uses_parent = true;
                    Node::Parent(pos)
                }
                _ => {
                    return Err(Error::at(
                        "S0211",
                        pos,
                        format!("The symbol \"{o}\" cannot be used as a unary operator"),
                    ));
                }
            },
            Tok::End => {
                return Err(Error::at("S0207", pos, "Unexpected end of expression"));
            }
        })
    }

    fn led(&mut self, t: Token, left: Node) -> Result<Node> {
        let pos = t.pos;
        let Tok::Op(op) = t.tok else {
            return Err(Error::at(
                "S0201",
                pos,
                format!("Syntax error: unexpected {}", describe(&t.tok)),
            ));
        };
        let bp = lbp(&Tok::Op(op));
        let bin = |p: &mut Self, o: BinOp, left: Node| -> Result<Node> {
            let r = p.expression(bp)?;
            Ok(Node::Binary(o, Box::new(left), Box::new(r), pos))
        };
        Ok(match op {
            "." => {
                let r = self.expression(bp)?;
                make_path(left, r, pos)?
            }
            "+" => bin(self, BinOp::Add, left)?,
            "-" => bin(self, BinOp::Sub, left)?,
            "*" => bin(self, BinOp::Mul, left)?,
            "/" => bin(self, BinOp::Div, left)?,
            "%" => bin(self, BinOp::Mod, left)?,
            "=" => bin(self, BinOp::Eq, left)?,
            "!=" => bin(self, BinOp::Ne, left)?,
            "<" => bin(self, BinOp::Lt, left)?,
            "<=" => bin(self, BinOp::Le, left)?,
            ">" => bin(self, BinOp::Gt, left)?,
            ">=" => bin(self, BinOp::Ge, left)?,
            "&" => bin(self, BinOp::Concat, left)?,
            "in" => bin(self, BinOp::In, left)?,
            "and" => Node::And(Box::new(left), Box::new(self.expression(bp)?)),
            "or" => Node::Or(Box::new(left), Box::new(self.expression(bp)?)),
            ".." => Node::Range(Box::new(left), Box::new(self.expression(bp)?), pos),
            "?:" => Node::Elvis(Box::new(left), Box::new(self.expression(bp)?)),
            "??" => Node::Coalesce(Box::new(left), Box::new(self.expression(bp)?)),
            "~>" => Node::Apply(Box::new(left), Box::new(self.expression(bp)?), pos),
            ":=" => {
                let Node::Var(name, _) = left else {
                    return Err(Error::at(
                        "S0212",
                        pos,
                        "The left side of := must be a variable name (start with $)",
                    ));
                };
                // Right-associative.
                Node::Bind(name, Box::new(self.expression(bp - 1)?))
            }
            "?" => {
                let then = self.expression(0)?;
                let els = if self.is_op(":") {
                    self.next();
                    Some(Box::new(self.expression(0)?))
                } else {
                    None
                };
                Node::Cond(Box::new(left), Box::new(then), els)
            }
            "(" => {
                let args = self.list(")", |p| p.expression(0))?;
                Node::Call(Box::new(left), args, pos)
            }
            "[" => {
                if self.is_op("]") {
                    self.next();
                    return Ok(keep_array(left));
                }
                let pred = self.expression(0)?;
                self.expect("]")?;
                add_predicate(left, pred, pos)?
            }
            "{" => {
                let pairs = self.pairs()?;
                match left {
                    Node::Path(mut p) => {
                        if p.group.is_some() {
                            return Err(Error::at(
                                "S0210",
                                pos,
                                "Each step can only have one grouping expression",
                            ));
                        }
                        p.group = Some((pairs, pos));
                        Node::Path(p)
                    }
                    Node::Group(..) => {
                        return Err(Error::at(
                            "S0210",
                            pos,
                            "Each step can only have one grouping expression",
                        ));
                    }
                    other => Node::Group(Box::new(other), pairs, pos),
                }
            }
            "^" => {
                self.expect("(")?;
                let terms = self.list(")", |p| {
                    let mut desc = false;
                    if p.is_op("<") {
                        p.next();
                    } else if p.is_op(">") {
                        p.next();
                        desc = true;
                    }
                    Ok((p.expression(0)?, desc))
                })?;
                let mut path = into_path(left);
                path.steps.push(Step::new(Node::Sort(terms, pos)));
                Node::Path(Box::new(path))
            }
            "@" | "#" => {
                let t = self.next();
                let Tok::Var(name) = t.tok else {
                    return Err(Error::at(
                        "S0214",
                        t.pos,
                        format!("The right side of {op} must be a variable name (start with $)"),
                    ));
                };
                // As in JSONata, predicates on a non-path left side become the step's stages.
                let left = match left {
                    Node::Filter(e, preds, keep) if !preds.is_empty() => {
                        let mut step = Step::new(*e);
                        step.stages = preds.into_iter().map(Stage::Filter).collect();
                        Node::Path(Box::new(Path {
                            steps: vec![step],
                            keep_singleton: keep,
                            group: None,
                        }))
                    }
                    other => other,
                };
                let mut path = into_path(left);
                let Some(step) = path.steps.last_mut() else {
                    return Err(Error::at("S0201", pos, "Syntax error: empty path"));
                };
                if op == "@" {
                    if !step.stages.is_empty() {
                        return Err(Error::at(
                            "S0215",
                            pos,
                            "A context variable binding must precede any predicates on a step",
                        ));
                    }
                    if matches!(step.expr, Node::Sort(..)) {
                        return Err(Error::at(
                            "S0216",
                            pos,
                            "A context variable binding must precede the 'order-by' clause on a step",
                        ));
                    }
                    step.focus = Some(name);
                } else if step.stages.is_empty() {
                    step.index = Some(name);
                } else {
                    step.stages.push(Stage::Index(name));
                }
                step.tuple = true;
                Node::Path(Box::new(path))
            }
            _ => {
                return Err(Error::at(
                    "S0201",
                    pos,
                    format!("Syntax error: unexpected \"{op}\""),
                ));
            }
        })
    }
}

fn into_path(n: Node) -> Path {
    match n {
        Node::Path(p) => *p,
        other => {
            let (expr, keep) = match other {
                Node::Filter(e, preds, keep) if preds.is_empty() => (*e, keep),
                e => (e, false),
            };
            Path {
                steps: vec![Step::new(expr)],
                keep_singleton: keep,
                group: None,
            }
        }
    }
}

fn keep_array(n: Node) -> Node {
    match n {
        Node::Path(mut p) => {
            p.keep_singleton = true;
            Node::Path(p)
        }
        Node::Filter(e, preds, _) => Node::Filter(e, preds, true),
        other => Node::Filter(Box::new(other), vec![], true),
    }
}

fn add_predicate(left: Node, pred: Node, pos: usize) -> Result<Node> {
    Ok(match left {
        Node::Path(mut p) => {
            if p.group.is_some() {
                return Err(Error::at(
                    "S0209",
                    pos,
                    "A predicate cannot follow a grouping expression in a step",
                ));
            }
            if let Some(last) = p.steps.last_mut() {
                last.stages.push(Stage::Filter(pred));
            }
            Node::Path(p)
        }
        Node::Group(..) => {
            return Err(Error::at(
                "S0209",
                pos,
                "A predicate cannot follow a grouping expression in a step",
            ));
        }
        Node::Filter(e, mut preds, keep) => {
            preds.push(pred);
            Node::Filter(e, preds, keep)
        }
        other => Node::Filter(Box::new(other), vec![pred], false),
    })
}

/// `left.right` as one path (JSONata flattens nested dots into steps).
fn make_path(left: Node, right: Node, pos: usize) -> Result<Node> {
    let mut path = into_path(left);
    match right {
        Node::Path(r) => {
            let r = *r;
            path.keep_singleton |= r.keep_singleton;
            path.steps.extend(r.steps);
            if r.group.is_some() {
                path.group = r.group;
            }
        }
        other => {
            let (expr, stages, keep) = match other {
                Node::Filter(e, preds, keep) => (*e, preds, keep),
                e => (e, vec![], false),
            };
            path.keep_singleton |= keep;
            let mut step = Step::new(expr);
            step.stages = stages.into_iter().map(Stage::Filter).collect();
            path.steps.push(step);
        }
    }
    for s in path.steps.iter_mut() {
        match &s.expr {
            Node::Str(name) => s.expr = Node::Name(name.clone()),
            Node::Num(_) | Node::Bool(_) | Node::Null => {
                return Err(Error::at(
                    "S0213",
                    pos,
                    "A literal value cannot be used as a step within a path expression",
                ));
            }
            _ => {}
        }
    }
    let n = path.steps.len();
    if let Some(Node::Array(_, cons)) = path.steps.first_mut().map(|s| &mut s.expr) {
        *cons = true;
    }
    if let Some(Node::Array(_, cons)) = path.steps.get_mut(n - 1).map(|s| &mut s.expr) {
        *cons = true;
    }
    Ok(Node::Path(Box::new(path)))
}
