import Foundation
import GRDB
import Hummingbird
import ShopKit

/// Notifications: records messages for users (by an id the sender chooses, so a repeated call
/// records once) and lists them.
@main
struct NotificationsService {
    static func main() async throws {
        let shop = try ShopService(name: "notifications")
        let database = try shop.openDatabase(schema: [
            """
            CREATE TABLE IF NOT EXISTS notifications (
                id TEXT PRIMARY KEY, user_id INTEGER NOT NULL, message TEXT NOT NULL, created_at TEXT NOT NULL)
            """,
        ])
        let router = shop.makeRouter()
        router.put("/notifications/:id") { request, context in
            let form = try await request.decode(as: NoticeForm.self, context: context)
            let id = try context.parameters.require("id")
            let (notice, created) = try await database.write { db in
                if let existing = try Notification.fetchOne(db, sql: "SELECT * FROM notifications WHERE id = ?", arguments: [id]) {
                    return (existing, false)
                }
                let notice = Notification(id: id, userID: form.userID, message: form.message, createdAt: Date().formatted(.iso8601))
                try db.execute(sql: "INSERT INTO notifications (id, user_id, message, created_at) VALUES (?, ?, ?, ?)",
                               arguments: [notice.id, notice.userID, notice.message, notice.createdAt])
                return (notice, true)
            }
            if created { shop.logger.info("notification recorded", metadata: ["notification_id": "\(id)", "user_id": "\(form.userID)"]) }
            return EditedResponse(status: created ? .created : .ok, response: notice)
        }
        router.get("/notifications") { request, _ in
            let userID = request.uri.queryParameters.get("user_id", as: Int64.self)
            return try await database.read { db in
                try Notification.fetchAll(db, sql: "SELECT * FROM notifications WHERE ?1 IS NULL OR user_id = ?1 ORDER BY created_at",
                                          arguments: [userID])
            }
        }
        router.get("/notifications/:id") { _, context in
            let id = try context.parameters.require("id")
            guard let notice = try await database.read({ db in
                try Notification.fetchOne(db, sql: "SELECT * FROM notifications WHERE id = ?", arguments: [id])
            }) else { throw HTTPError(.notFound, message: "no notification \(id)") }
            return notice
        }
        try await shop.run(router)
    }
}

struct NoticeForm: Decodable {
    let userID: Int64
    let message: String

    enum CodingKeys: String, CodingKey {
        case message
        case userID = "user_id"
    }
}

struct Notification: ResponseCodable, FetchableRecord {
    let id: String
    let userID: Int64
    let message: String
    let createdAt: String

    enum CodingKeys: String, CodingKey {
        case id, message
        case userID = "user_id"
        case createdAt = "created_at"
    }
}
