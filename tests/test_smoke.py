def test_allowed_origin_gets_its_origin_back(client, policy):
    policy({"path": "/api/*", "origins": ["https://app.example.com"]})
    response = client.get("/api/orders", headers={"Origin": "https://app.example.com"})
    assert response.status_code == 200
    assert response.headers.getlist("Access-Control-Allow-Origin") == ["https://app.example.com"]
