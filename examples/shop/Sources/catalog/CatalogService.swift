import Foundation
import GRDB
import Hummingbird
import ShopKit

/// Catalog: products (CRUD) and their stock. Stock is taken by reservations keyed by order id, so
/// reserving twice for the same order (a retried call) takes it once.
@main
struct CatalogService {
    static func main() async throws {
        let shop = try ShopService(name: "catalog")
        let database = try shop.openDatabase(schema: [
            """
            CREATE TABLE IF NOT EXISTS products (
                id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL, price_cents INTEGER NOT NULL, stock INTEGER NOT NULL)
            """,
            """
            CREATE TABLE IF NOT EXISTS reservations (
                order_id TEXT PRIMARY KEY, product_id INTEGER NOT NULL REFERENCES products(id), quantity INTEGER NOT NULL)
            """,
        ])
        let products = Products(database: database)
        let router = shop.makeRouter()
        router.post("/products") { request, context in
            EditedResponse(status: .created, response: try products.create(try await request.decode(as: ProductForm.self, context: context)))
        }
        router.get("/products") { _, _ in try products.all() }
        router.get("/products/:id") { _, context in try products.find(try context.parameters.require("id", as: Int64.self)) }
        router.put("/products/:id") { request, context in
            try products.update(try context.parameters.require("id", as: Int64.self),
                                with: try await request.decode(as: ProductForm.self, context: context))
        }
        router.delete("/products/:id") { _, context in
            try products.delete(try context.parameters.require("id", as: Int64.self))
            return HTTPResponse.Status.noContent
        }
        router.put("/products/:id/reservations/:order") { request, context in
            let form = try await request.decode(as: ReservationForm.self, context: context)
            let (reservation, created) = try products.reserve(product: try context.parameters.require("id", as: Int64.self),
                                                              order: try context.parameters.require("order"), quantity: form.quantity)
            return EditedResponse(status: created ? .created : .ok, response: reservation)
        }
        try await shop.run(router)
    }
}

struct ProductForm: Decodable {
    let name: String
    let priceCents: Int
    let stock: Int

    enum CodingKeys: String, CodingKey {
        case name, stock
        case priceCents = "price_cents"
    }

    func validated() throws -> ProductForm {
        guard !name.trimmingCharacters(in: .whitespaces).isEmpty else { throw HTTPError(.badRequest, message: "name must not be empty") }
        guard priceCents >= 0, stock >= 0 else { throw HTTPError(.badRequest, message: "price_cents and stock must be ≥ 0") }
        return self
    }
}

struct Product: ResponseCodable, FetchableRecord {
    let id: Int64
    let name: String
    let priceCents: Int
    let stock: Int

    enum CodingKeys: String, CodingKey {
        case id, name, stock
        case priceCents = "price_cents"
    }
}

struct ReservationForm: Decodable {
    let quantity: Int
}

struct Reservation: ResponseCodable, FetchableRecord {
    let orderID: String
    let productID: Int64
    let quantity: Int

    enum CodingKeys: String, CodingKey {
        case quantity
        case orderID = "order_id"
        case productID = "product_id"
    }
}

struct Products: Sendable {
    let database: DatabasePool

    func create(_ form: ProductForm) throws -> Product {
        let form = try form.validated()
        return try database.write { db in
            try db.execute(sql: "INSERT INTO products (name, price_cents, stock) VALUES (?, ?, ?)",
                           arguments: [form.name, form.priceCents, form.stock])
            return Product(id: db.lastInsertedRowID, name: form.name, priceCents: form.priceCents, stock: form.stock)
        }
    }

    func all() throws -> [Product] {
        try database.read { db in try Product.fetchAll(db, sql: "SELECT * FROM products ORDER BY id") }
    }

    func find(_ id: Int64) throws -> Product {
        guard let product = try database.read({ db in try Self.product(id, in: db) }) else { throw Self.missing(id) }
        return product
    }

    func update(_ id: Int64, with form: ProductForm) throws -> Product {
        let form = try form.validated()
        return try database.write { db in
            try db.execute(sql: "UPDATE products SET name = ?, price_cents = ?, stock = ? WHERE id = ?",
                           arguments: [form.name, form.priceCents, form.stock, id])
            guard db.changesCount == 1 else { throw Self.missing(id) }
            return Product(id: id, name: form.name, priceCents: form.priceCents, stock: form.stock)
        }
    }

    func delete(_ id: Int64) throws {
        try database.write { db in
            if try Bool.fetchOne(db, sql: "SELECT 1 FROM reservations WHERE product_id = ?", arguments: [id]) == true {
                throw HTTPError(.conflict, message: "product \(id) has reservations")
            }
            try db.execute(sql: "DELETE FROM products WHERE id = ?", arguments: [id])
            guard db.changesCount == 1 else { throw Self.missing(id) }
        }
    }

    /// Takes `quantity` from the stock for `order`, once: a repeated call answers the reservation made.
    func reserve(product id: Int64, order: String, quantity: Int) throws -> (Reservation, created: Bool) {
        guard quantity > 0 else { throw HTTPError(.badRequest, message: "quantity must be > 0") }
        return try database.write { db in
            if let existing = try Reservation.fetchOne(db, sql: "SELECT * FROM reservations WHERE order_id = ?", arguments: [order]) {
                guard existing.productID == id, existing.quantity == quantity else {
                    throw HTTPError(.conflict, message: "order \(order) already reserved \(existing.quantity) of product \(existing.productID)")
                }
                return (existing, false)
            }
            guard let product = try Self.product(id, in: db) else { throw Self.missing(id) }
            guard product.stock >= quantity else {
                throw HTTPError(.conflict, message: "only \(product.stock) of product \(id) in stock")
            }
            try db.execute(sql: "UPDATE products SET stock = stock - ? WHERE id = ?", arguments: [quantity, id])
            try db.execute(sql: "INSERT INTO reservations (order_id, product_id, quantity) VALUES (?, ?, ?)", arguments: [order, id, quantity])
            return (Reservation(orderID: order, productID: id, quantity: quantity), true)
        }
    }

    private static func product(_ id: Int64, in db: Database) throws -> Product? {
        try Product.fetchOne(db, sql: "SELECT * FROM products WHERE id = ?", arguments: [id])
    }

    private static func missing(_ id: Int64) -> HTTPError { HTTPError(.notFound, message: "no product \(id)") }
}
