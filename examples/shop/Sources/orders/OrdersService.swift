import Foundation
import GRDB
import Hummingbird
import Logging
import ShopKit

/// Orders: creating one checks the buyer with `users`, the product with `catalog`, reserves the
/// stock (keyed by the order id, so a retried call reserves once) and tells `notifications`.
@main
struct OrdersService {
    static func main() async throws {
        let shop = try ShopService(name: "orders")
        let database = try shop.openDatabase(schema: [
            """
            CREATE TABLE IF NOT EXISTS orders (
                id TEXT PRIMARY KEY, user_id INTEGER NOT NULL, product_id INTEGER NOT NULL, quantity INTEGER NOT NULL,
                total_cents INTEGER NOT NULL, created_at TEXT NOT NULL)
            """,
        ])
        let desk = OrderDesk(database: database, users: try Upstream("users"), catalog: try Upstream("catalog"),
                             notifications: try Upstream("notifications"), logger: shop.logger)
        let router = shop.makeRouter()
        router.post("/orders") { request, context in
            let form = try await request.decode(as: OrderForm.self, context: context)
            return EditedResponse(status: .created, response: try await desk.place(form, authorization: request.headers[.authorization]))
        }
        router.get("/orders") { request, _ in
            try desk.list(userID: request.uri.queryParameters.get("user_id", as: Int64.self))
        }
        router.get("/orders/:id") { _, context in try await desk.details(try context.parameters.require("id")) }
        try await shop.run(router)
    }
}

struct OrderForm: Decodable {
    let productID: Int64
    let quantity: Int

    enum CodingKeys: String, CodingKey {
        case quantity
        case productID = "product_id"
    }
}

struct Order: ResponseCodable, FetchableRecord {
    let id: String
    let userID: Int64
    let productID: Int64
    let quantity: Int
    let totalCents: Int
    let createdAt: String

    enum CodingKeys: String, CodingKey {
        case id, quantity
        case userID = "user_id"
        case productID = "product_id"
        case totalCents = "total_cents"
        case createdAt = "created_at"
    }
}

/// An order with its product as the catalog describes it now.
struct OrderDetails: ResponseEncodable {
    let order: Order
    let product: Product
}

struct Buyer: Decodable {
    let id: Int64
    let username: String
}

struct Product: Codable {
    let id: Int64
    let name: String
    let priceCents: Int
    let stock: Int

    enum CodingKeys: String, CodingKey {
        case id, name, stock
        case priceCents = "price_cents"
    }
}

struct Reservation: Codable {
    let quantity: Int
}

struct Notice: Codable {
    let userID: Int64
    let message: String

    enum CodingKeys: String, CodingKey {
        case message
        case userID = "user_id"
    }
}

struct OrderDesk: Sendable {
    let database: DatabasePool
    let users: Upstream
    let catalog: Upstream
    let notifications: Upstream
    let logger: Logger

    func place(_ form: OrderForm, authorization: String?) async throws -> Order {
        guard form.quantity > 0 else { throw HTTPError(.badRequest, message: "quantity must be > 0") }
        let (userStatus, buyer) = try await users.send("GET", "/validate", headers: authorization.map { ["Authorization": $0] } ?? [:],
                                                      as: Buyer.self)
        guard let buyer else {
            throw userStatus == 401 ? HTTPError(.unauthorized, message: "log in first (users answered 401)")
                : HTTPError(.badGateway, message: "users answered \(userStatus)")
        }
        let product = try await product(form.productID, missing: .unprocessableContent)
        let id = UUID().uuidString.lowercased()
        let (reserved, _) = try await catalog.send("PUT", "/products/\(form.productID)/reservations/\(id)",
                                                   json: Reservation(quantity: form.quantity), as: Reservation.self)
        switch reserved {
        case 200, 201: break
        case 409: throw HTTPError(.conflict, message: "not enough of product \(form.productID) in stock")
        default: throw HTTPError(.badGateway, message: "catalog answered \(reserved) to the reservation")
        }
        let order = Order(id: id, userID: buyer.id, productID: product.id, quantity: form.quantity,
                          totalCents: product.priceCents * form.quantity, createdAt: Date().formatted(.iso8601))
        try await database.write { db in
            try db.execute(sql: """
                INSERT INTO orders (id, user_id, product_id, quantity, total_cents, created_at) VALUES (?, ?, ?, ?, ?, ?)
                """, arguments: [order.id, order.userID, order.productID, order.quantity, order.totalCents, order.createdAt])
        }
        logger.info("order placed", metadata: ["order_id": "\(id)", "user_id": "\(buyer.id)", "trace_id": "\(Trace.id(of: Trace.parent) ?? "")"])
        let notice = Notice(userID: buyer.id, message: "Order \(id): \(form.quantity) × \(product.name) confirmed")
        let (noticeStatus, _) = try await notifications.send("PUT", "/notifications/order-\(id)", json: notice, as: Notice.self)
        if !(200..<300).contains(noticeStatus) {
            logger.warning("notification not recorded", metadata: ["order_id": "\(id)", "status": "\(noticeStatus)"])
        }
        return order
    }

    func list(userID: Int64?) throws -> [Order] {
        try database.read { db in
            if let userID {
                return try Order.fetchAll(db, sql: "SELECT * FROM orders WHERE user_id = ? ORDER BY created_at", arguments: [userID])
            }
            return try Order.fetchAll(db, sql: "SELECT * FROM orders ORDER BY created_at")
        }
    }

    func details(_ id: String) async throws -> OrderDetails {
        let order = try await database.read { db in try Order.fetchOne(db, sql: "SELECT * FROM orders WHERE id = ?", arguments: [id]) }
        guard let order else { throw HTTPError(.notFound, message: "no order \(id)") }
        return OrderDetails(order: order, product: try await product(order.productID, missing: .notFound))
    }

    private func product(_ id: Int64, missing: HTTPResponse.Status) async throws -> Product {
        let (status, product) = try await catalog.send("GET", "/products/\(id)", as: Product.self)
        if let product { return product }
        throw status == 404 ? HTTPError(missing, message: "no product \(id) in the catalog")
            : HTTPError(.badGateway, message: "catalog answered \(status) for product \(id)")
    }
}
