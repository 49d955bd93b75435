"""The MarketSource and PriceSource ports' adapters: Binance public streams, candle replay, the
synthetic walk, and price books."""
